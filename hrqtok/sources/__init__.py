"""Where items and their vectors come from: files, sentence embedders, packaged models."""
