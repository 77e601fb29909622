//! Decoders that turn wire bytes into the text the rules match against.
//!
//! Real traffic is encoded, so a message body goes through a pipeline before
//! any rule sees it:
//!
//! ```text
//! wire bytes ─▶ ContentDecoder ─▶ MultipartDecoder ─▶ decoded body ─┬─▶ as-is
//!               (Content-Encoding)  (multipart/* only)              ├─▶ normalize()
//!                                                                    └─▶ find_blobs() ─▶ decode_blob()
//! ```
//!
//! 1. [`ContentDecoder`] undoes `Content-Encoding` (gzip, deflate, br, zstd,
//!    stacked or not) as a stream. It is bounded twice: by
//!    [`DecodeLimits::max_output`], the scan bound, and by
//!    [`DecodeLimits::max_ratio`], which stops decompression bombs.
//! 2. For `multipart/*` bodies, [`MultipartDecoder`] undoes each part's
//!    `Content-Transfer-Encoding` (base64, quoted-printable) as a stream,
//!    keeping part headers and separating parts with `\n`. The boundary comes
//!    from [`boundary_from_content_type`].
//! 3. The scanner then matches several views of the decoded body: the bytes
//!    themselves; [`normalize`]'s view with percent-escapes, JSON escapes and
//!    HTML character references decoded in one pass; and the base64 blobs
//!    [`base64::find_blobs`] locates, each decoded by
//!    [`base64::decode_blob`].
//!
//! Every stage works on chunks as the network delivers them and keeps only
//! bounded state between chunks; none of them panics on hostile input. Each
//! stage decodes one level only (`%2541` is `%41`, base64 inside base64 stays
//! encoded), which keeps the cost linear and predictable.

pub mod base64;
pub mod content;
pub mod multipart;
pub mod text;

pub use base64::{decode_blob, find_blobs};
pub use content::{ContentCoding, ContentDecoder, DecodeLimits, parse_content_encoding};
pub use multipart::{MultipartDecoder, boundary_from_content_type};
pub use text::normalize;
