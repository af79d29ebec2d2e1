//! File readers (being written).
