/* check_common.c - tests of common (being written). */
#include <check.h>

Suite *common_suite(void)
{
    return suite_create("common");
}
