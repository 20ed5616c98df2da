//! HTTP/1.1 as the loop needs it: a request parser and chunked decoder that
//! work on bytes, do no I/O and resume where they stopped when more bytes
//! arrive, and a response encoder.

pub mod chunked;
pub mod request;
pub mod response;
