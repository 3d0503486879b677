"""The gymnasium side of torchwm: built-in pixel environments, the recorder, latent wrappers."""
