/* train.c - (being written) */
#include "rerank.h"
