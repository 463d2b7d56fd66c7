"""Message sources. Each configured folder becomes one `FolderWorker` that the daemon supervises."""
