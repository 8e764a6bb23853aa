/* check_example.c - tests of example (being written). */
#include <check.h>

Suite *example_suite(void)
{
    return suite_create("example");
}
