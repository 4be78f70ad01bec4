//! Cross-tab exclusion with the Web Locks API: the tab recording a live (or resuming its
//! journal) holds that live's lock, so another tab's `resumePending` leaves the journal
//! alone. A closed tab releases its locks at once, which is what lets the next page resume.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::http::{get, set};
use crate::signal::Signal;

/// A held lock; dropping it releases the lock.
pub struct LiveLock {
    release: Option<js_sys::Function>,
    _granted: Option<Closure<dyn FnMut(JsValue) -> JsValue>>,
}

impl Drop for LiveLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}

/// The lock name of a live.
pub fn lock_name(live_id: u64) -> String {
    let mut name = String::from("livekeep-live-");
    name.push_str(&live_id.to_string());
    name
}

/// Takes the lock `name` if no one holds it. `None` means another tab holds it. Without the
/// Web Locks API (old browsers) every call succeeds: a lone tab is the common case.
pub async fn try_lock(name: &str) -> Option<LiveLock> {
    let unlocked = || {
        Some(LiveLock {
            release: None,
            _granted: None,
        })
    };
    let Some(window) = web_sys::window() else {
        return unlocked();
    };
    let locks = get(&window.navigator(), "locks");
    let Ok(request) = get(&locks, "request").dyn_into::<js_sys::Function>() else {
        return unlocked();
    };
    let mut release = None;
    let hold = js_sys::Promise::new(&mut |resolve, _reject| release = Some(resolve));
    let outcome = Rc::new(Cell::new(None::<bool>));
    let decided = Rc::new(Signal::new());
    let granted = {
        let (outcome, decided) = (outcome.clone(), decided.clone());
        Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |lock: JsValue| {
            let got_it = !lock.is_null();
            outcome.set(Some(got_it));
            decided.notify();
            // The lock is held until the returned promise settles.
            if got_it {
                hold.clone().into()
            } else {
                JsValue::UNDEFINED
            }
        })
    };
    let options = js_sys::Object::new();
    set(&options, "ifAvailable", &JsValue::TRUE);
    let Ok(requested) = request.call3(&locks, &name.into(), &options, granted.as_ref()) else {
        return unlocked();
    };
    {
        // A refused request (e.g. an opaque origin) never calls back: proceed without a lock.
        let (outcome, decided) = (outcome.clone(), decided.clone());
        let requested: js_sys::Promise = requested.unchecked_into();
        wasm_bindgen_futures::spawn_local(async move {
            if wasm_bindgen_futures::JsFuture::from(requested)
                .await
                .is_err()
                && outcome.get().is_none()
            {
                outcome.set(Some(true));
                decided.notify();
            }
        });
    }
    let got_it = loop {
        if let Some(got_it) = outcome.get() {
            break got_it;
        }
        decided.notified().await;
    };
    got_it.then(|| LiveLock {
        release,
        _granted: Some(granted),
    })
}
