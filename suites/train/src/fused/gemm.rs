//! Strided matrix products through the `gemm` crate, the one candle's CPU backend uses.
//!
//! Operands are read in place through their strides, so transposes and per-head slices of a
//! fused QKV buffer cost no copies, and a product can be added into its destination (weight
//! gradients accumulate straight into their buffers). Views check their bounds when they are
//! made; the only unsafe part left to callers is [`SharedMut`], for parallel tasks that write
//! disjoint parts of one buffer.

use super::Real;

/// A read-only strided matrix: element (i, j) is `data[off + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    data: &'a [T],
    off: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Panics if a view reaches past the end of its buffer of `len` elements (a bug in the caller).
fn assert_inside(len: usize, off: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    // One past the last element the view touches (0 for an empty view).
    let extent = if rows == 0 || cols == 0 {
        0
    } else {
        off + (rows - 1) * rs + (cols - 1) * cs + 1
    };
    assert!(
        extent <= len,
        "matrix view {rows}x{cols} (strides {rs}, {cs}) at {off} outside a buffer of {len}"
    );
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows` × `cols` matrix at the start of `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, 0, rows, cols, cols, 1)
    }

    /// Any strided view inside `data`. Panics if it reaches outside (a bug in the caller).
    pub fn strided(
        data: &'a [T],
        off: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        assert_inside(data.len(), off, rows, cols, rs, cs);
        Mat {
            data,
            off,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose, as a view of the same memory.
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// A writable strided matrix.
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    off: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> MatMut<'a, T> {
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, 0, rows, cols, cols, 1)
    }

    pub fn strided(
        data: &'a mut [T],
        off: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        assert_inside(data.len(), off, rows, cols, rs, cs);
        MatMut {
            data,
            off,
            rows,
            cols,
            rs,
            cs,
        }
    }
}

/// Threads for one product: a single task, or split over the rayon pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    Seq,
    Threads(usize),
}

impl Par {
    /// As many threads as candle uses for its own matrix products.
    pub fn all() -> Self {
        match candle_core::utils::get_num_threads() {
            0 | 1 => Par::Seq,
            n => Par::Threads(n),
        }
    }

    fn gemm(self) -> gemm::Parallelism {
        match self {
            Par::Seq | Par::Threads(0 | 1) => gemm::Parallelism::None,
            Par::Threads(n) => gemm::Parallelism::Rayon(n),
        }
    }
}

/// `dst = scale · a b`, or `dst += scale · a b` when `accumulate`.
pub fn matmul<T: Real>(
    dst: &mut MatMut<'_, T>,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    scale: T,
    accumulate: bool,
    par: Par,
) {
    assert!(
        a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows,
        "matmul shapes: ({}x{}) ({}x{}) into ({}x{})",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        dst.rows,
        dst.cols
    );
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for i in 0..dst.rows {
                for j in 0..dst.cols {
                    dst.data[dst.off + i * dst.rs + j * dst.cs] = T::zero();
                }
            }
        }
        return;
    }
    // SAFETY: every view was bounds-checked when it was made, `dst` is borrowed mutably (so it
    // does not alias `a` or `b`), and gemm reads and writes only inside the given shapes.
    unsafe {
        raw_gemm(
            dst.data.as_mut_ptr().add(dst.off),
            dst.rows,
            dst.cols,
            dst.rs,
            dst.cs,
            a,
            b,
            scale,
            accumulate,
            par,
        )
    }
}

/// # Safety
/// `dst` must be valid for writes over the given shape and strides, and must not overlap `a`
/// or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn raw_gemm<T: Real>(
    dst: *mut T,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    scale: T,
    accumulate: bool,
    par: Par,
) {
    // gemm computes dst := alpha·dst + beta·lhs·rhs; alpha is read only when read_dst is set.
    gemm::gemm(
        rows,
        cols,
        a.cols,
        dst,
        cs as isize,
        rs as isize,
        accumulate,
        a.data.as_ptr().add(a.off),
        a.cs as isize,
        a.rs as isize,
        b.data.as_ptr().add(b.off),
        b.cs as isize,
        b.rs as isize,
        T::one(),
        scale,
        false,
        false,
        false,
        par.gemm(),
    )
}

/// One buffer written by several parallel tasks, each to its own part (for example, one
/// attention head's columns of a batch's rows).
pub struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the pointer comes from a `&mut [T]` that outlives every use (see `new`); tasks write
// disjoint elements, which is what `matmul` requires of its callers.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T: Real> SharedMut<T> {
    pub fn new(data: &mut [T]) -> Self {
        SharedMut {
            ptr: data.as_mut_ptr(),
            len: data.len(),
        }
    }

    /// `dst = scale · a b` (or `+=`) into a strided part of the shared buffer.
    ///
    /// # Safety
    /// The buffer given to `new` must still be alive and not otherwise borrowed, and no other
    /// task may read or write the elements of this view while the product runs.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul(
        &self,
        off: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        a: Mat<'_, T>,
        b: Mat<'_, T>,
        scale: T,
        accumulate: bool,
    ) {
        assert_inside(self.len, off, rows, cols, rs, 1);
        assert!(a.rows == rows && b.cols == cols && a.cols == b.rows);
        if rows == 0 || cols == 0 {
            return;
        }
        if a.cols == 0 {
            if !accumulate {
                for i in 0..rows {
                    self.slice(off + i * rs, cols).fill(T::zero());
                }
            }
            return;
        }
        raw_gemm(
            self.ptr.add(off),
            rows,
            cols,
            rs,
            1,
            a,
            b,
            scale,
            accumulate,
            Par::Seq,
        )
    }

    /// A mutable slice of the shared buffer.
    ///
    /// # Safety
    /// As for [`SharedMut::matmul`]: no other task may touch these elements meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, off: usize, len: usize) -> &mut [T] {
        assert!(off + len <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(off), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn seq(n: usize, s: f64) -> Vec<f64> {
        (0..n).map(|i| ((i * 7 % 11) as f64 - 5.0) * s).collect()
    }

    #[test]
    fn products_with_transposes_scale_and_accumulation() {
        let (m, k, n) = (5, 7, 3);
        let a = seq(m * k, 0.5);
        let b = seq(k * n, 0.25);
        let want = naive(&a, &b, m, k, n);
        // Plain.
        let mut c = vec![9.0; m * n];
        matmul(
            &mut MatMut::new(&mut c, m, n),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            1.0,
            false,
            Par::all(),
        );
        assert_eq!(c, want);
        // a stored transposed (k x m), read through its transpose; scaled, accumulated.
        let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let mut c2 = vec![1.0; m * n];
        matmul(
            &mut MatMut::new(&mut c2, m, n),
            Mat::new(&at, k, m).t(),
            Mat::new(&b, k, n),
            2.0,
            true,
            Par::Seq,
        );
        for (x, w) in c2.iter().zip(&want) {
            assert!((x - (1.0 + 2.0 * w)).abs() < 1e-12);
        }
    }

    #[test]
    fn strided_destination_inside_a_wider_buffer() {
        // Write a 2x2 product into columns 1..3 of a 2x4 buffer.
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [1.0, 0.0, 0.0, 1.0];
        let mut buf = vec![0.0f64; 8];
        matmul(
            &mut MatMut::strided(&mut buf, 1, 2, 2, 4, 1),
            Mat::new(&a, 2, 2),
            Mat::new(&b, 2, 2),
            1.0,
            false,
            Par::Seq,
        );
        assert_eq!(buf, vec![0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "outside a buffer")]
    fn views_outside_their_buffer_are_refused() {
        let a = [0.0f32; 5];
        let _ = Mat::new(&a, 2, 3);
    }
}
