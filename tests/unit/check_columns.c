/* check_columns.c - tests of columns (being written). */
#include <check.h>

Suite *columns_suite(void)
{
    return suite_create("columns");
}
