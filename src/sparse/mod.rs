//! Sparse tensors (the core of `edgepack.sparse`; no Python here).
//!
//! A [`SparseTensor`] holds a dense shape and dtype, a bit mask of the kept entries (one bit
//! per element, least significant bit first: `np.packbits(mask, bitorder="little")`) and the
//! kept values in C order. `to_dense` gives back the input bit for bit, except that a value
//! equal to zero is not kept by `encode` without a mask, so `-0.0` comes back as `+0.0`.
//!
//! The N:M layout ([`SparseTensor::encode_nm`]) stores exactly the slots of every group of `m`
//! along an axis (`n` per full group, `min(n, r)` for a partial group of `r`) and a
//! `ceil(log2 m)`-bit position per slot instead of a mask.
//!
//! [`codec`] is the entropy-coded byte form (`to_bytes` / `from_bytes`).

#![allow(clippy::needless_range_loop)] // group loops index several arrays at once

use crate::error::{Error, Result};
use crate::kernels::sparse::{self as k, mask_len};

pub mod codec;
pub mod rans;

/// Element types a sparse tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// int8
    I8,
    /// uint8
    U8,
    /// IEEE float16
    F16,
    /// bfloat16
    BF16,
    /// float32
    F32,
}

impl DType {
    /// Every dtype.
    pub const ALL: [DType; 5] = [DType::I8, DType::U8, DType::F16, DType::BF16, DType::F32];

    /// numpy name.
    pub fn name(self) -> &'static str {
        match self {
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
        }
    }
    /// Parse a numpy name.
    pub fn from_name(s: &str) -> Result<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                Error::dtype(format!(
                    "unsupported dtype {s}: expected int8, uint8, float16, bfloat16 or float32"
                ))
            })
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }
    /// Code in the byte form.
    pub fn code(self) -> u8 {
        match self {
            DType::I8 => 1,
            DType::U8 => 2,
            DType::F16 => 3,
            DType::BF16 => 4,
            DType::F32 => 5,
        }
    }
    /// From the code in the byte form.
    pub fn from_code(c: u8) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.code() == c)
    }
    fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32)
    }
}

/// Values of one element size (the bit patterns).
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// 1-byte elements.
    U8(Vec<u8>),
    /// 2-byte elements.
    U16(Vec<u16>),
    /// 4-byte elements.
    U32(Vec<u32>),
}

/// Borrowed dense data (the bit patterns of the input).
#[derive(Clone, Copy, Debug)]
pub enum Dense<'a> {
    /// 1-byte elements.
    U8(&'a [u8]),
    /// 2-byte elements.
    U16(&'a [u16]),
    /// 4-byte elements.
    U32(&'a [u32]),
}

impl Dense<'_> {
    fn len(&self) -> usize {
        match self {
            Dense::U8(v) => v.len(),
            Dense::U16(v) => v.len(),
            Dense::U32(v) => v.len(),
        }
    }
    fn size(&self) -> usize {
        match self {
            Dense::U8(_) => 1,
            Dense::U16(_) => 2,
            Dense::U32(_) => 4,
        }
    }
}

/// Mutable dense output (bit patterns).
#[derive(Debug)]
pub enum DenseMut<'a> {
    /// 1-byte elements.
    U8(&'a mut [u8]),
    /// 2-byte elements.
    U16(&'a mut [u16]),
    /// 4-byte elements.
    U32(&'a mut [u32]),
}

impl Values {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Values::U8(v) => v.len(),
            Values::U16(v) => v.len(),
            Values::U32(v) => v.len(),
        }
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `n` zero elements of `size` bytes; an allocation that fails is an error, not an abort
    /// (a tiny hostile buffer may declare a huge dense shape).
    fn zeros(size: usize, n: usize) -> Result<Values> {
        Ok(match size {
            1 => Values::U8(try_zeroed(n, "dense tensor")?),
            2 => Values::U16(try_zeroed(n, "dense tensor")?),
            _ => Values::U32(try_zeroed(n, "dense tensor")?),
        })
    }
    /// Little-endian byte planes: plane `b` holds byte `b` of every element.
    pub fn planes(&self) -> Vec<Vec<u8>> {
        match self {
            Values::U8(v) => vec![v.clone()],
            Values::U16(v) => (0..2)
                .map(|b| v.iter().map(|x| (x >> (8 * b)) as u8).collect())
                .collect(),
            Values::U32(v) => (0..4)
                .map(|b| v.iter().map(|x| (x >> (8 * b)) as u8).collect())
                .collect(),
        }
    }
    /// Rebuild from little-endian byte planes (all of one length).
    pub fn from_planes(size: usize, mut planes: Vec<Vec<u8>>) -> Values {
        match size {
            1 => Values::U8(std::mem::take(&mut planes[0])),
            2 => Values::U16(
                planes[0]
                    .iter()
                    .zip(&planes[1])
                    .map(|(&a, &b)| a as u16 | (b as u16) << 8)
                    .collect(),
            ),
            _ => Values::U32(
                (0..planes[0].len())
                    .map(|i| {
                        planes[0][i] as u32
                            | (planes[1][i] as u32) << 8
                            | (planes[2][i] as u32) << 16
                            | (planes[3][i] as u32) << 24
                    })
                    .collect(),
            ),
        }
    }
}

/// How the kept positions are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One bit per element.
    Mask,
    /// N:M groups along `axis`: slot positions, `ceil(log2 m)` bits each.
    NM {
        /// Slots per full group.
        n: usize,
        /// Group size.
        m: usize,
        /// The (non-negative) axis the groups run along.
        axis: usize,
    },
}

/// A sparse tensor; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseTensor {
    /// Element type.
    pub dtype: DType,
    /// Dense shape.
    pub shape: Vec<usize>,
    /// Position layout.
    pub layout: Layout,
    /// `Mask`: the packed bit mask (`mask_len(numel)` bytes). `NM`: the packed positions.
    pub index: Vec<u8>,
    /// The kept values, C order.
    pub values: Values,
}

/// A zero-filled vector, or [`Error::Limit`] when `n` elements cannot be allocated (instead of
/// the process aborting on a failed allocation).
pub(crate) fn try_zeroed<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::limit(format!(
            "{what}: {} bytes cannot be allocated",
            (n as u128) * std::mem::size_of::<T>() as u128
        ))
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Largest element count a sparse tensor may have (2^48).
pub const MAX_NUMEL: usize = 1 << 48;

/// Checked product of a shape.
///
/// The product of the non-zero dimensions is bounded too: with a zero dimension the count is
/// 0 but the others could still multiply past 2^64, and the N:M helpers ([`split_axis`])
/// multiply sub-shapes (a fuzzing finding: `[0, 2^33, 2^31 + 1]` overflowed there).
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_NUMEL)
        .map(|n| if shape.contains(&0) { 0 } else { n })
        .ok_or_else(|| Error::limit(format!("shape {shape:?} has more than 2^48 elements")))
}

fn check_dense(dtype: DType, shape: &[usize], x: &Dense) -> Result<usize> {
    let n = numel(shape)?;
    if x.size() != dtype.size() {
        return Err(Error::dtype(format!(
            "{} data passed as {}-byte elements",
            dtype.name(),
            x.size()
        )));
    }
    if x.len() != n {
        return Err(Error::arg(format!(
            "`x` has {} elements, shape {shape:?} has {n}",
            x.len()
        )));
    }
    Ok(n)
}

/// Bits per N:M position.
pub fn pos_bits(m: usize) -> u32 {
    if m <= 1 {
        0
    } else {
        usize::BITS - (m - 1).leading_zeros()
    }
}

/// Axis decomposition `(outer, len, inner)` of `shape` around `axis`.
pub fn split_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// [`split_axis`] for loops over lanes: when the axis is empty no lane holds a group, so the
/// lane count is 0 (a fuzzing finding: shape `[3, 2^37, 0]` along axis 2 is an empty tensor
/// of ~4e11 empty lanes, and the loops over them hung).
fn lanes(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    match split_axis(shape, axis) {
        (_, 0, _) => (0, 0, 0),
        t => t,
    }
}

/// Slots stored for a group of `r` entries under `n:m`.
fn nm_slots(n: usize, r: usize) -> usize {
    n.min(r)
}

/// Total N:M slots of a tensor.
pub fn nm_total_slots(shape: &[usize], n: usize, m: usize, axis: usize) -> usize {
    let (outer, len, inner) = split_axis(shape, axis);
    let full = len / m;
    let r = len % m;
    let per_lane = full * n + if r > 0 { nm_slots(n, r) } else { 0 };
    outer * inner * per_lane
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    nbits: u32,
}
impl BitWriter<'_> {
    fn put(&mut self, v: u64, bits: u32) {
        self.acc |= v << self.nbits;
        self.nbits += bits;
        while self.nbits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }
    fn finish(self) {
        if self.nbits > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// Reads `bits`-bit fields LSB first from a byte slice (the caller checked its length).
struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}
impl BitReader<'_> {
    fn get(&mut self, bits: u32) -> usize {
        let mut v = 0usize;
        for b in 0..bits as usize {
            let p = self.pos + b;
            v |= ((self.buf[p / 8] >> (p % 8) & 1) as usize) << b;
        }
        self.pos += bits as usize;
        v
    }
}

impl SparseTensor {
    /// Number of elements of the dense tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Keep the nonzero entries of `x` (for floats `-0.0` counts as zero), or the entries set
    /// in `mask` (packed, `mask_len(numel)` bytes, unused high bits zero) when given.
    pub fn encode(dtype: DType, shape: &[usize], x: Dense, mask: Option<&[u8]>) -> Result<Self> {
        let n = check_dense(dtype, shape, &x)?;
        let (index, values) = match mask {
            Some(m) => {
                if m.len() != mask_len(n) {
                    return Err(Error::arg(format!(
                        "`mask` has {} packed bytes, expected {} for {n} elements",
                        m.len(),
                        mask_len(n)
                    )));
                }
                if n % 8 != 0 && m[n / 8] >> (n % 8) != 0 {
                    return Err(Error::arg("`mask` has bits set past the last element"));
                }
                let nnz = k::popcount(m, n);
                let values = match x {
                    Dense::U8(v) => {
                        let mut o = vec![0u8; nnz];
                        k::compress(v, m, &mut o)?;
                        Values::U8(o)
                    }
                    Dense::U16(v) => {
                        let mut o = vec![0u16; nnz];
                        k::compress(v, m, &mut o)?;
                        Values::U16(o)
                    }
                    Dense::U32(v) => {
                        let mut o = vec![0u32; nnz];
                        k::compress(v, m, &mut o)?;
                        Values::U32(o)
                    }
                };
                (m.to_vec(), values)
            }
            None => {
                // One pass: mask and kept values together. The value buffer is sized for the
                // worst case from zeroed pages; only the pages written become resident.
                let mut m = vec![0u8; mask_len(n)];
                let values = match x {
                    Dense::U8(v) => {
                        let mut o = vec![0u8; n];
                        let nnz = k::mask_compress(v, 0xff, &mut m, &mut o)?;
                        o.truncate(nnz);
                        o.shrink_to_fit(); // large buffers: mremap, no copy
                        Values::U8(o)
                    }
                    Dense::U16(v) => {
                        let mut o = vec![0u16; n];
                        let nnz = k::mask_compress(v, 0x7fff, &mut m, &mut o)?;
                        o.truncate(nnz);
                        o.shrink_to_fit(); // large buffers: mremap, no copy
                        Values::U16(o)
                    }
                    Dense::U32(v) => {
                        let care = if dtype.is_float() {
                            0x7fff_ffff
                        } else {
                            u32::MAX
                        };
                        let mut o = vec![0u32; n];
                        let nnz = k::mask_compress(v, care, &mut m, &mut o)?;
                        o.truncate(nnz);
                        o.shrink_to_fit(); // large buffers: mremap, no copy
                        Values::U32(o)
                    }
                };
                (m, values)
            }
        };
        Ok(SparseTensor {
            dtype,
            shape: shape.to_vec(),
            layout: Layout::Mask,
            index,
            values,
        })
    }

    /// N:M layout along `axis` (non-negative): `x` must have at most `n` nonzero entries in
    /// every group of `m` consecutive entries along the axis. Every group stores exactly
    /// `min(n, r)` slots (`r` = group size): its nonzero entries, then negative zeros, then
    /// the first other positions, in position order, with their values. A `-0.0` comes back
    /// bit for bit unless its group has no free slot left (then it comes back as `+0.0`).
    pub fn encode_nm(
        dtype: DType,
        shape: &[usize],
        x: Dense,
        n: usize,
        m: usize,
        axis: usize,
    ) -> Result<Self> {
        crate::prune::check_nm(n, m)?;
        let total = check_dense(dtype, shape, &x)?;
        if axis >= shape.len() {
            return Err(Error::arg(format!(
                "`axis` {axis} is out of range for {} dimensions",
                shape.len()
            )));
        }
        let (outer, len, inner) = lanes(shape, axis);
        let slots = nm_total_slots(shape, n, m, axis);
        let bits = pos_bits(m);
        let mut index = Vec::with_capacity((slots * bits as usize).div_ceil(8));
        let mut w = BitWriter {
            out: &mut index,
            acc: 0,
            nbits: 0,
        };
        let mut picked: Vec<usize> = Vec::with_capacity(slots);
        let is_zero = |i: usize| -> bool {
            match x {
                Dense::U8(v) => v[i] == 0,
                Dense::U16(v) => v[i] & 0x7fff == 0,
                Dense::U32(v) => {
                    v[i] & if dtype.is_float() {
                        0x7fff_ffff
                    } else {
                        u32::MAX
                    } == 0
                }
            }
        };
        let is_bits_zero = |i: usize| -> bool {
            match x {
                Dense::U8(v) => v[i] == 0,
                Dense::U16(v) => v[i] == 0,
                Dense::U32(v) => v[i] == 0,
            }
        };
        let mut sel = [false; 256];
        for o in 0..outer {
            for i in 0..inner {
                let mut g0 = 0;
                while g0 < len {
                    let r = (len - g0).min(m);
                    let want = nm_slots(n, r);
                    let at = |t: usize| (o * len + g0 + t) * inner + i;
                    let nz = (0..r).filter(|&t| !is_zero(at(t))).count();
                    if nz > want {
                        let lane = o * inner + i;
                        return Err(Error::arg(format!(
                            "`x` is not {n}:{m} sparse along axis {axis}: group {} of lane {lane} has {nz} nonzero entries",
                            g0 / m
                        )));
                    }
                    let mut extra = want - nz;
                    for t in 0..r {
                        sel[t] = !is_zero(at(t));
                    }
                    // free slots go first to negative zeros (kept bit for bit), then to the
                    // first remaining positions
                    for t in 0..r {
                        if !sel[t] && extra > 0 && !is_bits_zero(at(t)) {
                            sel[t] = true;
                            extra -= 1;
                        }
                    }
                    for t in 0..r {
                        if !sel[t] && extra > 0 {
                            sel[t] = true;
                            extra -= 1;
                        }
                    }
                    for t in 0..r {
                        if sel[t] {
                            w.put(t as u64, bits);
                            picked.push(at(t));
                        }
                    }
                    g0 += r;
                }
            }
        }
        w.finish();
        debug_assert_eq!(picked.len(), slots);
        let values = match x {
            Dense::U8(v) => Values::U8(picked.iter().map(|&p| v[p]).collect()),
            Dense::U16(v) => Values::U16(picked.iter().map(|&p| v[p]).collect()),
            Dense::U32(v) => Values::U32(picked.iter().map(|&p| v[p]).collect()),
        };
        let _ = total;
        Ok(SparseTensor {
            dtype,
            shape: shape.to_vec(),
            layout: Layout::NM { n, m, axis },
            index,
            values,
        })
    }

    /// Flat element indices of the stored values, in storage order (N:M layout).
    fn nm_positions(&self, n: usize, m: usize, axis: usize) -> Vec<usize> {
        let (outer, len, inner) = lanes(&self.shape, axis);
        let bits = pos_bits(m);
        let mut rd = BitReader {
            buf: &self.index,
            pos: 0,
        };
        let mut out = Vec::with_capacity(self.nnz());
        for o in 0..outer {
            for i in 0..inner {
                let mut g0 = 0;
                while g0 < len {
                    let r = (len - g0).min(m);
                    for _ in 0..nm_slots(n, r) {
                        let t = rd.get(bits);
                        out.push((o * len + g0 + t) * inner + i);
                    }
                    g0 += r;
                }
            }
        }
        out
    }

    /// Validate N:M positions: in every group strictly increasing and inside the group.
    pub(crate) fn check_nm_positions(&self) -> Result<()> {
        let Layout::NM { n, m, axis } = self.layout else {
            return Ok(());
        };
        let (outer, len, inner) = lanes(&self.shape, axis);
        let bits = pos_bits(m);
        let need = (self.nnz() * bits as usize).div_ceil(8);
        if self.index.len() != need {
            return Err(Error::format(format!(
                "positions: {} bytes, expected {need} for {} slots",
                self.index.len(),
                self.nnz()
            )));
        }
        let mut rd = BitReader {
            buf: &self.index,
            pos: 0,
        };
        for _ in 0..outer * inner {
            let mut g0 = 0;
            while g0 < len {
                let r = (len - g0).min(m);
                let mut prev: Option<usize> = None;
                for _ in 0..nm_slots(n, r) {
                    let t = rd.get(bits);
                    if t >= r || prev.is_some_and(|p| t <= p) {
                        return Err(Error::format(format!(
                            "positions: invalid position {t} in a group of {r}"
                        )));
                    }
                    prev = Some(t);
                }
                g0 += r;
            }
        }
        let used = rd.pos;
        if !used.is_multiple_of(8) && self.index[used / 8] >> (used % 8) != 0 {
            return Err(Error::format("positions: padding bits are not zero"));
        }
        Ok(())
    }

    /// The packed bit mask of the stored positions (for the N:M layout, computed).
    pub fn mask(&self) -> Result<Vec<u8>> {
        match self.layout {
            Layout::Mask => Ok(self.index.clone()),
            Layout::NM { n, m, axis } => {
                let mut mk: Vec<u8> = try_zeroed(mask_len(self.numel()), "mask")?;
                for p in self.nm_positions(n, m, axis) {
                    mk[p / 8] |= 1 << (p % 8);
                }
                Ok(mk)
            }
        }
    }

    /// The dense tensor (C order), as the bit patterns of `dtype`.
    pub fn to_dense(&self) -> Result<Values> {
        let mut out = Values::zeros(self.dtype.size(), self.numel())?;
        match &mut out {
            Values::U8(o) => self.to_dense_into(DenseMut::U8(o))?,
            Values::U16(o) => self.to_dense_into(DenseMut::U16(o))?,
            Values::U32(o) => self.to_dense_into(DenseMut::U32(o))?,
        }
        Ok(out)
    }

    /// Write the dense tensor into `out` (C order, `numel` elements of the dtype's size;
    /// every element is written).
    pub fn to_dense_into(&self, out: DenseMut) -> Result<()> {
        let n = self.numel();
        let (len, size) = match &out {
            DenseMut::U8(o) => (o.len(), 1),
            DenseMut::U16(o) => (o.len(), 2),
            DenseMut::U32(o) => (o.len(), 4),
        };
        if len != n || size != self.dtype.size() {
            return Err(Error::arg(format!(
                "`out` holds {len} elements of {size} bytes, expected {n} of {} ({})",
                self.dtype.size(),
                self.dtype.name()
            )));
        }
        match self.layout {
            Layout::Mask => match (out, &self.values) {
                (DenseMut::U8(o), Values::U8(v)) => k::expand(&self.index, v, o)?,
                (DenseMut::U16(o), Values::U16(v)) => k::expand(&self.index, v, o)?,
                (DenseMut::U32(o), Values::U32(v)) => k::expand(&self.index, v, o)?,
                _ => return Err(Error::arg("values do not match the dtype")),
            },
            Layout::NM { n: nn, m, axis } => {
                let pos = self.nm_positions(nn, m, axis);
                match (out, &self.values) {
                    (DenseMut::U8(o), Values::U8(v)) => {
                        o.fill(0);
                        pos.iter().zip(v).for_each(|(&p, &x)| o[p] = x)
                    }
                    (DenseMut::U16(o), Values::U16(v)) => {
                        o.fill(0);
                        pos.iter().zip(v).for_each(|(&p, &x)| o[p] = x)
                    }
                    (DenseMut::U32(o), Values::U32(v)) => {
                        o.fill(0);
                        pos.iter().zip(v).for_each(|(&p, &x)| o[p] = x)
                    }
                    _ => return Err(Error::arg("values do not match the dtype")),
                }
            }
        }
        Ok(())
    }

    /// Bytes held in memory: positions (mask or N:M positions) plus values.
    pub fn nbytes(&self) -> usize {
        self.index.len() + self.nnz() * self.dtype.size()
    }
}
