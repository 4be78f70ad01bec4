//! The page's callbacks (`onStateChange`, `onProgress`, `onError`) and how they are called.

use wasm_bindgen::JsValue;

use crate::error::RecorderError;
use crate::model::ErrorInfo;

/// The page's callbacks (each optional).
#[derive(Default)]
pub struct Callbacks {
    /// `onStateChange(state)`
    pub on_state_change: Option<js_sys::Function>,
    /// `onProgress(progress)`
    pub on_progress: Option<js_sys::Function>,
    /// `onError(info)`
    pub on_error: Option<js_sys::Function>,
}

impl Callbacks {
    pub(super) fn error(&self, err: &RecorderError, fatal: bool) {
        call(&self.on_error, to_js(&ErrorInfo::new(err, fatal)));
    }
}

/// Calls a page callback; what it throws is its own business and must not break recording.
pub(super) fn call(callback: &Option<js_sys::Function>, arg: JsValue) {
    if let Some(callback) = callback {
        let _ = callback.call1(&JsValue::UNDEFINED, &arg);
    }
}

/// A plain JS object for `value` (numbers as numbers, never BigInt).
pub fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::UNDEFINED)
}
