/* store.c - the RocksDB feature store (being written). */
