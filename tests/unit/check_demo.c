/* check_demo.c - tests of demo (being written). */
#include <check.h>

Suite *demo_suite(void)
{
    return suite_create("demo");
}
