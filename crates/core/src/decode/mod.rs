//! Decoders that turn wire bytes into the text the rules match against.

pub mod base64;
pub mod content;
pub mod text;

pub use content::{ContentCoding, ContentDecoder, DecodeLimits, parse_content_encoding};
pub use text::normalize;
