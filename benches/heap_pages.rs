//! Synthetic PostgreSQL 15 heap pages of `pgbench_accounts`, filled the way the shared
//! benchmark's `FILLER=hash` load does (shared/bench/workload.sh):
//!
//! ```sql
//! INSERT INTO pgbench_accounts(aid, bid, abalance, filler) SELECT i, (i - 1) / 100000 + 1, 0,
//!   substr(replace(encode(sha256(i::text::bytea) || sha256((-i)::text::bytea), 'base64'),
//!          E'\n', ''), 1, 84)
//! ```
//!
//! Keyed BLAKE3 stands in for SHA-256 (same statistics: 84 base64 characters of 6 bits each
//! per row), so the pages compress about 2x with zstd -3 like real table data rather than the
//! ~20x of stock pgbench's blank filler.
//!
//! Page layout (little-endian, `bufpage.h` / `htup_details.h` / `itemid.h`):
//!
//! ```text
//! PageHeaderData (24): pd_lsn (xlogid u32, xrecoff u32), pd_checksum u16, pd_flags u16,
//!                      pd_lower u16, pd_upper u16, pd_special u16, pd_pagesize_version u16,
//!                      pd_prune_xid u32
//! ItemIdData × n (4):  lp_off:15 | lp_flags:2 | lp_len:15 (first field in the low bits)
//! free space
//! tuples, item 1 at the end of the page, each MAXALIGN(8)ed:
//!   HeapTupleHeaderData (23, t_hoff = 24): t_xmin u32, t_xmax u32, t_cid u32,
//!     t_ctid (bi_hi u16, bi_lo u16, ip_posid u16), t_infomask2 u16, t_infomask u16, t_hoff u8
//!   aid int4, bid int4, abalance int4,
//!   filler char(84) as a short varlena: header byte (85 << 1) | 1, then 84 characters
//! ```
//!
//! Tuple length 24 + 12 + 85 = 121, MAXALIGNed to 128: 61 tuples per page at fillfactor 100,
//! as in PostgreSQL.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

pub const PAGE_SIZE: usize = 8192;

const PAGE_HEADER_LEN: usize = 24;
const ITEM_ID_LEN: usize = 4;
const TUPLE_HEADER_LEN: usize = 24; // 23 bytes, MAXALIGNed (t_hoff)
const FILLER_LEN: usize = 84;
/// aid, bid, abalance, then the 1-byte varlena header and the characters.
const TUPLE_LEN: usize = TUPLE_HEADER_LEN + 12 + 1 + FILLER_LEN;
const TUPLE_SPACE: usize = (TUPLE_LEN + 7) & !7;
pub const TUPLES_PER_PAGE: usize = (PAGE_SIZE - PAGE_HEADER_LEN) / (TUPLE_SPACE + ITEM_ID_LEN);

const PD_ALL_VISIBLE: u16 = 0x0004;
const PG_PAGE_LAYOUT_VERSION: u16 = 4;
const LP_NORMAL: u32 = 1;
const HEAP_NATTS: u16 = 4;
const HEAP_XMIN_COMMITTED: u16 = 0x0100;
const HEAP_XMAX_INVALID: u16 = 0x0800;
const HEAP_UPDATED: u16 = 0x2000;
/// First normal transaction id used by the load; a freshly initdb'ed PG 15 is around here.
const LOAD_XID: u32 = 735;
/// Rows the load commits per transaction (a batched load: xmin rises slowly with aid).
const ROWS_PER_LOAD_XACT: u64 = 10_000;
/// Share of rows rewritten by later pgbench transactions (non-zero abalance, later xmin).
const UPDATED_PER_MILLE: u32 = 40;

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding, appended to `out`.
pub fn base64_encode(input: &[u8], out: &mut Vec<u8>) {
    for group in input.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(BASE64[((n >> shift) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// The filler of row `aid`: the first 84 characters of base64(H(aid) ‖ H(-aid)).
fn filler(key: &[u8; 32], aid: i64, out: &mut Vec<u8>) {
    out.clear();
    let mut digests = [0u8; 64];
    for (half, v) in digests.chunks_exact_mut(32).zip([aid, -aid]) {
        let text = v.to_string();
        half.copy_from_slice(blake3::keyed_hash(key, text.as_bytes()).as_bytes());
    }
    base64_encode(&digests, out);
    out.truncate(FILLER_LEN);
}

fn put_u16(page: &mut [u8], at: usize, v: u16) {
    page[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(page: &mut [u8], at: usize, v: u32) {
    page[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Fills `page` as heap block `blkno`, whose first row is `first_aid`.
fn fill_page(page: &mut [u8], blkno: u32, first_aid: u64, seed: u64, key: &[u8; 32]) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(blkno) + 1);
    page.fill(0);

    let n = TUPLES_PER_PAGE;
    let lower = PAGE_HEADER_LEN + n * ITEM_ID_LEN;
    let upper = PAGE_SIZE - n * TUPLE_SPACE;

    // Page LSNs grow with the block number (the load wrote the table front to back).
    let lsn = 0x0000_0001_0300_0000u64 + u64::from(blkno) * 8_296 + rng.gen_range(0..64) * 8;
    put_u32(page, 0, (lsn >> 32) as u32);
    put_u32(page, 4, lsn as u32);
    put_u16(page, 8, 0); // pd_checksum: data checksums are off by default in PG 15
    put_u16(page, 10, PD_ALL_VISIBLE); // vacuumed after the load
    put_u16(page, 12, lower as u16);
    put_u16(page, 14, upper as u16);
    put_u16(page, 16, PAGE_SIZE as u16);
    put_u16(page, 18, PAGE_SIZE as u16 | PG_PAGE_LAYOUT_VERSION);
    put_u32(page, 20, 0); // pd_prune_xid

    let mut text = Vec::with_capacity(128);
    for item in 0..n {
        let aid = first_aid + item as u64;
        let off = PAGE_SIZE - (item + 1) * TUPLE_SPACE;
        let lp = off as u32 | (LP_NORMAL << 15) | ((TUPLE_LEN as u32) << 17);
        put_u32(page, PAGE_HEADER_LEN + item * ITEM_ID_LEN, lp);

        let updated = rng.gen_range(0..1000) < UPDATED_PER_MILLE;
        let load_xid = LOAD_XID + ((aid - 1) / ROWS_PER_LOAD_XACT) as u32;
        let (xmin, abalance, infomask) = if updated {
            // Rewritten by a pgbench transaction some time after the load.
            let xid = 50_000 + (aid / 64) as u32 + rng.gen_range(0..20_000);
            let balance = rng.gen_range(-5000i32..=5000);
            (
                xid,
                balance,
                HEAP_XMIN_COMMITTED | HEAP_XMAX_INVALID | HEAP_UPDATED,
            )
        } else {
            (load_xid, 0, HEAP_XMIN_COMMITTED | HEAP_XMAX_INVALID)
        };

        let t = &mut page[off..off + TUPLE_SPACE];
        put_u32(t, 0, xmin);
        put_u32(t, 4, 0); // t_xmax
        put_u32(t, 8, 0); // t_cid
        put_u16(t, 12, (blkno >> 16) as u16); // t_ctid: points at itself
        put_u16(t, 14, blkno as u16);
        put_u16(t, 16, item as u16 + 1);
        put_u16(t, 18, HEAP_NATTS);
        put_u16(t, 20, infomask);
        t[22] = TUPLE_HEADER_LEN as u8; // t_hoff
        put_u32(t, 24, aid as u32);
        put_u32(t, 28, ((aid - 1) / 100_000 + 1) as u32); // bid
        put_u32(t, 32, abalance as u32);
        t[36] = (((1 + FILLER_LEN) << 1) | 1) as u8; // short varlena header
        filler(key, aid as i64, &mut text);
        t[37..37 + FILLER_LEN].copy_from_slice(&text);
    }
}

/// `pages` heap pages of `pgbench_accounts` (blocks 0.., aid 1..), deterministic in `seed`.
pub fn generate(pages: usize, seed: u64) -> Vec<u8> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let key = blake3::derive_key("pgcairn bench heap_pages filler", &key);
    let mut buf = vec![0u8; pages * PAGE_SIZE];
    buf.par_chunks_mut(PAGE_SIZE)
        .enumerate()
        .for_each(|(blkno, page)| {
            let first_aid = 1 + (blkno * TUPLES_PER_PAGE) as u64;
            fill_page(page, blkno as u32, first_aid, seed, &key);
        });
    buf
}

/// Structural checks on generated pages; panics on the first inconsistency.
pub fn check(buf: &[u8]) {
    assert_eq!(
        TUPLES_PER_PAGE, 61,
        "pgbench_accounts holds 61 rows per page"
    );
    assert_eq!(buf.len() % PAGE_SIZE, 0);
    let u16_at = |p: &[u8], at: usize| u16::from_le_bytes([p[at], p[at + 1]]);
    let u32_at = |p: &[u8], at: usize| u32::from_le_bytes(p[at..at + 4].try_into().unwrap());
    let mut is_base64 = [false; 256];
    for &c in BASE64 {
        is_base64[c as usize] = true;
    }
    let mut expected_aid = 1u32;
    for (blkno, page) in buf.chunks_exact(PAGE_SIZE).enumerate() {
        let lower = u16_at(page, 12) as usize;
        let upper = u16_at(page, 14) as usize;
        assert_eq!(u16_at(page, 16), 8192);
        assert_eq!(u16_at(page, 18), 8192 | 4);
        assert!(PAGE_HEADER_LEN <= lower && lower <= upper && upper <= PAGE_SIZE);
        let items = (lower - PAGE_HEADER_LEN) / ITEM_ID_LEN;
        let mut prev_off = PAGE_SIZE;
        for i in 0..items {
            let lp = u32_at(page, PAGE_HEADER_LEN + i * ITEM_ID_LEN);
            let (off, flags, len) = ((lp & 0x7fff) as usize, (lp >> 15) & 3, (lp >> 17) as usize);
            assert_eq!(flags, LP_NORMAL);
            assert_eq!(len, TUPLE_LEN);
            assert!(off >= upper && off + len <= prev_off && off % 8 == 0);
            prev_off = off;
            let t = &page[off..off + len];
            assert_eq!(t[22] as usize, TUPLE_HEADER_LEN);
            assert_eq!(u16_at(t, 16) as usize, i + 1, "t_ctid of block {blkno}");
            assert_eq!(u32_at(t, 24), expected_aid);
            assert_eq!(t[36], 0xab);
            assert!(t[37..].iter().all(|&c| is_base64[c as usize]));
            expected_aid += 1;
        }
    }
}

/// Compression ratio of `data` with zstd at `level` in one frame (like `zstd -3 file`).
pub fn zstd_ratio(data: &[u8], level: i32) -> f64 {
    let compressed = zstd::bulk::compress(data, level).expect("zstd");
    data.len() as f64 / compressed.len() as f64
}

pub fn base64_selftest() {
    let enc = |s: &[u8]| {
        let mut v = Vec::new();
        base64_encode(s, &mut v);
        String::from_utf8(v).unwrap()
    };
    assert_eq!(enc(b""), "");
    assert_eq!(enc(b"f"), "Zg==");
    assert_eq!(enc(b"fo"), "Zm8=");
    assert_eq!(enc(b"foo"), "Zm9v");
    assert_eq!(enc(b"foobar"), "Zm9vYmFy");
}
