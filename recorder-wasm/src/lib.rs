//! Live recorder for the browser.
