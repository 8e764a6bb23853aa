/* metrics.c - (being written) */
#include "rerank.h"
