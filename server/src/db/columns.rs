//! How the domain's ids, states and unsigned counts are read from columns: the database keeps
//! `BIGINT`s and words, services see [`PostId`], [`UploadState`], `u64` offsets.
//!
//! Queries bind the plain values (`id.get()`, `state.as_str()`, [`signed`]); rows decode
//! these types directly (`Option<PostId>` works too), or through `#[sqlx(try_from = …)]`.

use std::convert::Infallible;

use sqlx::{
    any::{AnyTypeInfo, AnyTypeInfoKind, AnyValueRef},
    error::BoxDynError,
    Any, Decode, Type, ValueRef,
};

use crate::domain::{LiveStatus, MediaId, PostId, UploadId, UploadState};

/// Decodes `$ty` from a column of `$raw`, converted by `$convert` (fallible).
macro_rules! decoded_from {
    ($ty:ty, $raw:ty, $convert:expr) => {
        impl Type<Any> for $ty {
            fn type_info() -> AnyTypeInfo {
                <$raw as Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <$raw as Type<Any>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, Any> for $ty {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                let raw = <$raw as Decode<'r, Any>>::decode(value)?;
                $convert(raw).map_err(Into::into)
            }
        }
    };
}

decoded_from!(PostId, i64, |raw| Ok::<_, Infallible>(PostId::new(raw)));
decoded_from!(MediaId, i64, |raw| Ok::<_, Infallible>(MediaId::new(raw)));
decoded_from!(UploadId, String, |raw: String| UploadId::parse(&raw));
decoded_from!(UploadState, String, |raw: String| raw
    .parse::<UploadState>());
decoded_from!(LiveStatus, String, |raw: String| raw.parse::<LiveStatus>());

/// An offset or a length for a `BIGINT` column: the database has no unsigned integers, and
/// nothing the server stores comes near `i64::MAX` (it saturates there).
pub fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A nullable `BIGINT` that holds an unsigned count (an upload's deferred length); rows decode
/// it with `#[sqlx(try_from = "NullableCount")]` into an `Option<u64>`.
#[derive(Debug, Clone, Copy)]
pub struct NullableCount(Option<u64>);

impl From<NullableCount> for Option<u64> {
    fn from(count: NullableCount) -> Self {
        count.0
    }
}

impl Type<Any> for NullableCount {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        ty.kind().is_integer() || ty.kind() == AnyTypeInfoKind::Null
    }
}

impl<'r> Decode<'r, Any> for NullableCount {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(Self(None));
        }
        let raw = <i64 as Decode<'r, Any>>::decode(value)?;
        Ok(Self(Some(u64::try_from(raw)?)))
    }
}
