//! The codec of every generated server: tonic's prost codec, except that a request that
//! cannot be decoded (random bytes, a wrong wire type, invalid UTF-8 in a string field)
//! is the caller's mistake: INVALID_ARGUMENT, not prost's INTERNAL.

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// How a request that could not be decoded is answered: INVALID_ARGUMENT with prost's
/// description of what was wrong (which field, which wire type), never the bytes.
pub fn undecodable(error: &Status) -> Status {
    Status::invalid_argument(format!(
        "the request could not be decoded: {}",
        error.message()
    ))
}

/// Encodes `T` (responses) and decodes `U` (requests) with prost.
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            inner: self.inner.decoder(),
        }
    }
}

/// Prost's decoder, with its errors made INVALID_ARGUMENT by [`undecodable`].
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(buf).map_err(|e| undecodable(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
