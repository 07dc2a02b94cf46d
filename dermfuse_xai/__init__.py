"""dermfuse_xai."""
