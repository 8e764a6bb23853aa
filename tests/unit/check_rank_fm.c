/* check_rank_fm.c - tests of src/rank (being written). */
#include <check.h>

Suite *rank_fm_suite(void)
{
    return suite_create("rank_fm");
}
