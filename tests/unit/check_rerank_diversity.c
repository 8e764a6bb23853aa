/* check_rerank_diversity.c - (being written) */
#include <check.h>

Suite *rerank_diversity_suite(void);
Suite *rerank_diversity_suite(void)
{
    return suite_create("rerank_diversity");
}
