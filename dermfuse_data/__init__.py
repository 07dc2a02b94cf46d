"""dermfuse_data."""
