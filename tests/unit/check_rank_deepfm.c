/* check_rank_deepfm.c - tests of src/rank (being written). */
#include <check.h>

Suite *rank_deepfm_suite(void)
{
    return suite_create("rank_deepfm");
}
