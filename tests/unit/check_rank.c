/* check_rank.c - tests of src/rank (being written). */
#include <check.h>

Suite *rank_suite(void)
{
    return suite_create("rank");
}
