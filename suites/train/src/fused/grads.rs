//! Weight gradients that fused ops compute outside candle's graph.
//!
//! candle's custom ops take at most three inputs, and a transformer block has twelve weights.
//! The fused block therefore hands candle the gradient of its input (and of one weight, which
//! keeps the op in candle's graph), and adds the other weights' gradients here, straight into
//! one buffer per weight: no zero-filled gradient per use and no extra addition pass, which
//! candle's backward pass would otherwise spend on each of them.
//!
//! [`backward`] runs candle's backward pass with a collector installed on this thread and
//! merges what it collected into the returned [`GradStore`]. A fused op whose backward pass
//! runs without one (a bare `Tensor::backward`) fails with an error that says so, rather than
//! losing the gradients silently.

use super::Real;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Error, Result, Tensor, TensorId};
use std::cell::RefCell;
use std::collections::HashMap;

struct Pending {
    /// The weight, for its shape and device.
    param: Tensor,
    grad: CpuStorage,
}

thread_local! {
    static COLLECTOR: RefCell<Option<HashMap<TensorId, Pending>>> = const { RefCell::new(None) };
}

/// `loss.backward()`, plus the weight gradients that fused ops computed on the side.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    let outer = COLLECTOR.with(|c| c.replace(Some(HashMap::new())));
    let result = loss.backward();
    let collected = COLLECTOR
        .with(|c| c.replace(outer))
        .expect("installed above");
    let mut grads = result?;
    for (id, p) in collected {
        // Fused ops run on the CPU only, so the weight is a CPU tensor too.
        let g = super::cpu_tensor(p.grad, p.param.shape())?;
        let g = match grads.get_id(id) {
            Some(existing) => (existing + g)?,
            None => g,
        };
        grads.insert_id(id, g);
    }
    Ok(grads)
}

/// Adds to `param`'s gradient: `f` gets the weight's gradient buffer (zeros on first use in
/// this backward pass) and adds its contribution into it.
pub fn accumulate<T: Real>(op: &str, param: &Tensor, f: impl FnOnce(&mut [T])) -> Result<()> {
    COLLECTOR.with(|c| {
        let mut c = c.borrow_mut();
        let Some(map) = c.as_mut() else {
            return Err(Error::Msg(format!(
                "{op}: this op adds its weights' gradients outside candle's graph; run the \
                 backward pass with ovbench_train::fused::grads::backward(&loss) instead of \
                 loss.backward()"
            )));
        };
        let entry = map.entry(param.id()).or_insert_with(|| Pending {
            param: param.clone(),
            grad: T::wrap(vec![T::zero(); param.elem_count()]),
        });
        let buf = T::of_mut(&mut entry.grad)
            .ok_or_else(|| Error::Msg(format!("{op}: gradient dtype differs between uses")))?;
        f(buf);
        Ok(())
    })
}
