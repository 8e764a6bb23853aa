/* check_tfrecord.c - tests of tfrecord (being written). */
#include <check.h>

Suite *tfrecord_suite(void)
{
    return suite_create("tfrecord");
}
