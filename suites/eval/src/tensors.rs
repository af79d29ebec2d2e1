//! Named tensors from a weight file: safetensors, or a PyTorch checkpoint (`.bin` / `.pt`,
//! the zip format `torch.save` writes since 1.6). The format is told by the bytes, not the
//! file name, and a file that is neither (or is cut short) is a clear error.

use crate::error::{io, EvalError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The tensors of one file, by name.
pub struct TensorFile {
    pub path: PathBuf,
    /// `safetensors` or `pytorch-zip`.
    pub format: &'static str,
    pub tensors: HashMap<String, Tensor>,
}

/// What the first bytes of a file say it is.
pub fn sniff(path: &Path) -> Result<&'static str> {
    // Weights are memory-mapped or streamed later, never read whole: the bound is only
    // against absurd inputs. The open refuses FIFOs and devices instead of blocking on them.
    let (mut f, len) = ovbench_harness::io::open_regular(path)?;
    let mut head = [0u8; 9];
    let n = f.read(&mut head).map_err(io(path))?;
    if n >= 4 && &head[..4] == b"PK\x03\x04" {
        return Ok("pytorch-zip");
    }
    if n >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Err(EvalError::Format {
            path: path.into(),
            msg: "a legacy (pre-1.6, non-zip) PyTorch pickle; re-save it with torch.save or convert it to safetensors".into(),
        });
    }
    if n == 9 {
        let header = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if head[8] == b'{' {
            if header.saturating_add(8) > len {
                return Err(EvalError::Format {
                    path: path.into(),
                    msg: format!(
                        "truncated safetensors file: the header says {header} bytes, the file has {len}"
                    ),
                });
            }
            return Ok("safetensors");
        }
    }
    Err(EvalError::Format {
        path: path.into(),
        msg: if len == 0 {
            "empty file, expected safetensors or a PyTorch checkpoint".into()
        } else {
            "neither a safetensors file nor a PyTorch (zip) checkpoint".into()
        },
    })
}

/// candle's PyTorch reader trusts the pickle: a malformed one panics inside it, and a declared
/// size allocates before any data is read (hundreds of GB from a 1 KB file). So the tensor
/// list is read first, under a panic guard, and every tensor and storage must fit in the file
/// (PyTorch stores storages uncompressed), before candle reads the data, also guarded.
fn read_pytorch_zip(path: &Path) -> std::result::Result<Vec<(String, Tensor)>, String> {
    use ovbench_harness::guard::catch_quietly;
    let file_len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let infos = catch_quietly(|| candle_core::pickle::read_pth_tensor_info(path, false, None))
        .map_err(|p| format!("malformed checkpoint ({p})"))?
        .map_err(|e| e.to_string())?;
    for t in &infos {
        let size = t.dtype.size_in_bytes() as u64;
        let elems = t
            .layout
            .dims()
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let fits = |n: Option<u64>| {
            n.and_then(|n| n.checked_mul(size))
                .is_some_and(|b| b <= file_len)
        };
        if !fits(elems) || !fits(Some(t.storage_size as u64)) {
            return Err(format!(
                "tensor '{}' declares {:?} {:?} over a storage of {} elements: more than the file's {file_len} bytes",
                t.name,
                t.layout.dims(),
                t.dtype,
                t.storage_size
            ));
        }
    }
    catch_quietly(|| candle_core::pickle::read_all(path))
        .map_err(|p| format!("malformed checkpoint ({p})"))?
        .map_err(|e| e.to_string())
}

/// Loads every tensor of `path` on the CPU, converting floating-point tensors to f32.
/// Integer tensors are kept as they are (callers reject them where a weight is expected).
pub fn load(path: &Path) -> Result<TensorFile> {
    let format = sniff(path)?;
    let bad = |e: candle_core::Error| EvalError::Format {
        path: path.into(),
        msg: format!("cannot read as {format}: {e}"),
    };
    let list: Vec<(String, Tensor)> = match format {
        "safetensors" => candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(bad)?
            .into_iter()
            .collect(),
        _ => read_pytorch_zip(path).map_err(|msg| EvalError::Format {
            path: path.into(),
            msg: format!("cannot read as {format}: {msg}"),
        })?,
    };
    let mut tensors = HashMap::with_capacity(list.len());
    for (name, t) in list {
        let t = match t.dtype() {
            DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32).map_err(bad)?,
            _ => t,
        };
        tensors.insert(name, t);
    }
    if tensors.is_empty() {
        return Err(EvalError::Format {
            path: path.into(),
            msg: "holds no tensors".into(),
        });
    }
    Ok(TensorFile {
        path: path.into(),
        format,
        tensors,
    })
}

impl TensorFile {
    /// The tensor `name` with the given shape, as f32.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| EvalError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
                hint: String::new(),
            })?;
        check(&self.path, name, t, shape)?;
        Ok(t.clone())
    }
}

/// Checks a weight's dtype (floating point) and shape.
pub fn check(path: &Path, name: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(EvalError::DType {
            path: path.into(),
            name: name.into(),
            found: format!("{:?}", t.dtype()),
        });
    }
    if t.dims() != shape {
        return Err(EvalError::Shape {
            path: path.into(),
            name: name.into(),
            found: t.dims().to_vec(),
            expected: format!("{shape:?}"),
        });
    }
    Ok(())
}
