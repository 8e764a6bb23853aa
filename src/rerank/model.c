/* model.c - (being written) */
#include "rerank.h"
