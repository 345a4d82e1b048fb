//! Shared helpers for the netns tests.
