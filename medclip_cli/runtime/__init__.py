"""What training and evaluation share below them: the device, the pooled/trimmed forward, and
kernel-level choices (autocast, oneDNN linear, compiled blocks, channels-last)."""
