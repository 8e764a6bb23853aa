/* check_store.c - tests of store (being written). */
#include <check.h>

Suite *store_suite(void)
{
    return suite_create("store");
}
