//! Decoders that turn wire bytes into the text the rules match against.
