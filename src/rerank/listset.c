/* listset.c - (being written) */
#include "rerank.h"
