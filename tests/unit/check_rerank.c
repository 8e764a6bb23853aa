/* check_rerank.c - (being written) */
#include <check.h>

Suite *rerank_suite(void);
Suite *rerank_suite(void)
{
    return suite_create("rerank");
}
