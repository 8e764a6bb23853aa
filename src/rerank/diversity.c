/* diversity.c - (being written) */
#include "rerank.h"
