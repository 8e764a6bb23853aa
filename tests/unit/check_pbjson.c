/* check_pbjson.c - tests of pbjson (being written). */
#include <check.h>

Suite *pbjson_suite(void)
{
    return suite_create("pbjson");
}
