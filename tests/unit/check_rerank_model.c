/* check_rerank_model.c - (being written) */
#include <check.h>

Suite *rerank_model_suite(void);
Suite *rerank_model_suite(void)
{
    return suite_create("rerank_model");
}
