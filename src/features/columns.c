/* columns.c - feature columns (being written). */
