/* Optional compiled kernels of dlprep.formats.osm_pack (built by setup.py when a C compiler
 * is there; without it the same results come from NumPy and OpenCV).
 *
 * pack(canvas, c, h, w, margin, value, rows, cols, size, out, per, union)
 *   canvas: uint8 (c, h, w) C-contiguous; rows, cols: int64 (k,); out: uint8 (k, size, size, c);
 *   per: int64 (k, c); union: int64 (k,). Tile (r, q) starts at pixel (margin + r * size,
 *   margin + q * size); its pixels equal to `value` become 255, the others 0, channels last.
 * labels(label, itemsize, h, w, margin, rows, cols, size, out)
 *   label: uint8 or uint16 (h, w); out: int64 (k,), the id covering most pixels of each tile
 *   (0 ignored; 0 when none; ties to the smaller id).
 * Every buffer's size is checked against the shapes; the GIL is released while they run. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

static int check(Py_buffer *b, Py_ssize_t need, const char *what) {
    if (b->len < need) {
        PyErr_Format(PyExc_ValueError, "_osmpack: %s has %zd bytes, needs %zd", what, b->len,
                     need);
        return 0;
    }
    return 1;
}

static int tiles_inside(const int64_t *rows, const int64_t *cols, Py_ssize_t k,
                        Py_ssize_t h, Py_ssize_t w, Py_ssize_t margin, Py_ssize_t size) {
    for (Py_ssize_t t = 0; t < k; t++) {
        if (rows[t] < 0 || cols[t] < 0 || margin + (rows[t] + 1) * size > h ||
            margin + (cols[t] + 1) * size > w) {
            PyErr_SetString(PyExc_ValueError, "_osmpack: a tile lies beyond the canvas");
            return 0;
        }
    }
    return 1;
}

#if defined(__SSE2__)
#include <emmintrin.h>
/* 16 pixels of four planes at once: compare, count (each mask byte, -1, subtracted from a
 * byte counter: at most 64 steps per tile row, flushed per row), interleave (unpack bytes,
 * then pairs) into 64 output bytes. */
static inline void pack16(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                          const uint8_t *p3, __m128i v, uint8_t *o, __m128i *acc) {
    __m128i m0 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p0), v);
    __m128i m1 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p1), v);
    __m128i m2 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p2), v);
    __m128i m3 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p3), v);
    acc[0] = _mm_sub_epi8(acc[0], m0);
    acc[1] = _mm_sub_epi8(acc[1], m1);
    acc[2] = _mm_sub_epi8(acc[2], m2);
    acc[3] = _mm_sub_epi8(acc[3], m3);
    acc[4] = _mm_sub_epi8(acc[4], _mm_or_si128(_mm_or_si128(m0, m1), _mm_or_si128(m2, m3)));
    __m128i lo01 = _mm_unpacklo_epi8(m0, m1), hi01 = _mm_unpackhi_epi8(m0, m1);
    __m128i lo23 = _mm_unpacklo_epi8(m2, m3), hi23 = _mm_unpackhi_epi8(m2, m3);
    _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi16(lo01, lo23));
    _mm_storeu_si128((__m128i *)(o + 16), _mm_unpackhi_epi16(lo01, lo23));
    _mm_storeu_si128((__m128i *)(o + 32), _mm_unpacklo_epi16(hi01, hi23));
    _mm_storeu_si128((__m128i *)(o + 48), _mm_unpackhi_epi16(hi01, hi23));
}
#endif

static void pack4(const uint8_t *cv, Py_ssize_t h, Py_ssize_t w, Py_ssize_t margin,
                  uint8_t value, const int64_t *rows, const int64_t *cols, Py_ssize_t k,
                  Py_ssize_t size, uint8_t *out, int64_t *per, int64_t *uni) {
    const Py_ssize_t plane = h * w;
    for (Py_ssize_t t = 0; t < k; t++) {
        const Py_ssize_t y0 = margin + rows[t] * size, x0 = margin + cols[t] * size;
        uint32_t n[5] = {0, 0, 0, 0, 0};
        for (Py_ssize_t y = 0; y < size; y++) {
            const uint8_t *p0 = cv + (y0 + y) * w + x0;
            const uint8_t *p1 = p0 + plane, *p2 = p1 + plane, *p3 = p2 + plane;
            uint8_t *o = out + ((t * size + y) * size) * 4;
            Py_ssize_t x = 0;
#if defined(__SSE2__)
            if (size >= 16 && size <= 1024) {
                const __m128i v = _mm_set1_epi8((char)value), zero = _mm_setzero_si128();
                __m128i acc[5] = {zero, zero, zero, zero, zero};
                for (; x + 16 <= size; x += 16)
                    pack16(p0 + x, p1 + x, p2 + x, p3 + x, v, o + 4 * x, acc);
                for (int c = 0; c < 5; c++) {
                    __m128i sad = _mm_sad_epu8(acc[c], zero);
                    n[c] += (uint32_t)(_mm_cvtsi128_si32(sad) +
                                       _mm_cvtsi128_si32(_mm_srli_si128(sad, 8)));
                }
            }
#endif
            for (; x < size; x++) {
                uint32_t m0 = p0[x] == value, m1 = p1[x] == value, m2 = p2[x] == value,
                         m3 = p3[x] == value;
                o[4 * x] = m0 ? 255 : 0;
                o[4 * x + 1] = m1 ? 255 : 0;
                o[4 * x + 2] = m2 ? 255 : 0;
                o[4 * x + 3] = m3 ? 255 : 0;
                n[0] += m0;
                n[1] += m1;
                n[2] += m2;
                n[3] += m3;
                n[4] += m0 | m1 | m2 | m3;
            }
        }
        for (int c = 0; c < 4; c++) per[4 * t + c] = n[c];
        uni[t] = n[4];
    }
}

static void pack_any(const uint8_t *cv, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                     Py_ssize_t margin, uint8_t value, const int64_t *rows,
                     const int64_t *cols, Py_ssize_t k, Py_ssize_t size, uint8_t *out,
                     int64_t *per, int64_t *uni) {
    const Py_ssize_t plane = h * w;
    for (Py_ssize_t t = 0; t < k; t++) {
        const Py_ssize_t y0 = margin + rows[t] * size, x0 = margin + cols[t] * size;
        int64_t nu = 0;
        for (Py_ssize_t ch = 0; ch < c; ch++) per[t * c + ch] = 0;
        for (Py_ssize_t y = 0; y < size; y++) {
            const uint8_t *p = cv + (y0 + y) * w + x0;
            uint8_t *o = out + ((t * size + y) * size) * c;
            for (Py_ssize_t x = 0; x < size; x++) {
                int hit = 0;
                for (Py_ssize_t ch = 0; ch < c; ch++) {
                    int m = p[ch * plane + x] == value;
                    o[x * c + ch] = m ? 255 : 0;
                    per[t * c + ch] += m;
                    hit |= m;
                }
                nu += hit;
            }
        }
        uni[t] = nu;
    }
}

static PyObject *py_pack(PyObject *self, PyObject *args) {
    Py_buffer cv, rows, cols, out, per, uni;
    Py_ssize_t c, h, w, margin, size;
    int value;
    if (!PyArg_ParseTuple(args, "y*nnnniy*y*nw*w*w*", &cv, &c, &h, &w, &margin, &value, &rows,
                          &cols, &size, &out, &per, &uni))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t k = rows.len / 8;
    if (c < 1 || size < 1 || margin < 0 || value < 0 || value > 255) {
        PyErr_SetString(PyExc_ValueError, "_osmpack: bad shape or value");
        goto done;
    }
    if (!check(&cv, c * h * w, "canvas") || !check(&cols, 8 * k, "cols") ||
        !check(&out, k * size * size * c, "out") || !check(&per, 8 * k * c, "per") ||
        !check(&uni, 8 * k, "union") ||
        !tiles_inside((const int64_t *)rows.buf, (const int64_t *)cols.buf, k, h, w, margin,
                      size))
        goto done;
    Py_BEGIN_ALLOW_THREADS
    if (c == 4)
        pack4((const uint8_t *)cv.buf, h, w, margin, (uint8_t)value,
              (const int64_t *)rows.buf, (const int64_t *)cols.buf, k, size,
              (uint8_t *)out.buf, (int64_t *)per.buf, (int64_t *)uni.buf);
    else
        pack_any((const uint8_t *)cv.buf, c, h, w, margin, (uint8_t)value,
                 (const int64_t *)rows.buf, (const int64_t *)cols.buf, k, size,
                 (uint8_t *)out.buf, (int64_t *)per.buf, (int64_t *)uni.buf);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&cv);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    PyBuffer_Release(&out);
    PyBuffer_Release(&per);
    PyBuffer_Release(&uni);
    return result;
}

/* The majority id per tile, for one label type T (uint8_t or uint16_t): a first pass finds
 * the smallest non-zero and the largest id (vectorised); only tiles with several ids count
 * them (a table of 2^bits counters, reset after each such tile). */
#define LABELS(NAME, T)                                                                       \
    static void NAME(const T *lab, Py_ssize_t w, Py_ssize_t margin, const int64_t *rows,     \
                     const int64_t *cols, Py_ssize_t k, Py_ssize_t size, int64_t *out,      \
                     uint32_t *counts) {                                                     \
        for (Py_ssize_t t = 0; t < k; t++) {                                                 \
            const Py_ssize_t y0 = margin + rows[t] * size, x0 = margin + cols[t] * size;     \
            T top = 0, low = (T)~(T)0; /* low: the smallest of (id - 1), 0 wrapping round */ \
            for (Py_ssize_t y = 0; y < size; y++) {                                          \
                const T *p = lab + (y0 + y) * w + x0;                                        \
                for (Py_ssize_t x = 0; x < size; x++) {                                      \
                    T v = p[x], d = (T)(v - 1);                                              \
                    top = v > top ? v : top;                                                 \
                    low = d < low ? d : low;                                                 \
                }                                                                            \
            }                                                                                \
            uint32_t lo = (uint32_t)low + 1;                                                 \
            if (top == 0 || lo == top) {                                                     \
                out[t] = top;                                                                \
                continue;                                                                    \
            }                                                                                \
            for (Py_ssize_t y = 0; y < size; y++) {                                          \
                const T *p = lab + (y0 + y) * w + x0;                                        \
                for (Py_ssize_t x = 0; x < size; x++) counts[p[x]]++;                       \
            }                                                                                \
            uint32_t best = 0, best_n = 0;                                                   \
            for (uint32_t v = lo; v <= top; v++) { /* ascending: ties keep the smaller id */ \
                if (counts[v] > best_n) {                                                    \
                    best_n = counts[v];                                                      \
                    best = v;                                                                \
                }                                                                            \
            }                                                                                \
            out[t] = best;                                                                   \
            for (Py_ssize_t y = 0; y < size; y++) {                                          \
                const T *p = lab + (y0 + y) * w + x0;                                        \
                for (Py_ssize_t x = 0; x < size; x++) counts[p[x]] = 0;                     \
            }                                                                                \
        }                                                                                    \
    }

LABELS(labels8, uint8_t)
LABELS(labels16, uint16_t)

static PyObject *py_labels(PyObject *self, PyObject *args) {
    Py_buffer lab, rows, cols, out;
    Py_ssize_t itemsize, h, w, margin, size;
    if (!PyArg_ParseTuple(args, "y*nnnny*y*nw*", &lab, &itemsize, &h, &w, &margin, &rows,
                          &cols, &size, &out))
        return NULL;
    PyObject *result = NULL;
    uint32_t *counts = NULL;
    Py_ssize_t k = rows.len / 8;
    if ((itemsize != 1 && itemsize != 2) || size < 1 || margin < 0) {
        PyErr_SetString(PyExc_ValueError, "_osmpack: bad label itemsize or shape");
        goto done;
    }
    if (!check(&lab, itemsize * h * w, "label") || !check(&cols, 8 * k, "cols") ||
        !check(&out, 8 * k, "out") ||
        !tiles_inside((const int64_t *)rows.buf, (const int64_t *)cols.buf, k, h, w, margin,
                      size))
        goto done;
    counts = PyMem_RawCalloc((size_t)1 << (8 * itemsize), sizeof(uint32_t));
    if (counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (itemsize == 2)
        labels16((const uint16_t *)lab.buf, w, margin, (const int64_t *)rows.buf,
                 (const int64_t *)cols.buf, k, size, (int64_t *)out.buf, counts);
    else
        labels8((const uint8_t *)lab.buf, w, margin, (const int64_t *)rows.buf,
                (const int64_t *)cols.buf, k, size, (int64_t *)out.buf, counts);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(counts);
    PyBuffer_Release(&lab);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    PyBuffer_Release(&out);
    return result;
}

/* The side of a point beyond the canvas (w, h) and margin: 1 above, 2 below, 3 left, 4 right
 * (the first that holds), 0 near or inside. */
static inline int side(const int32_t *p, double w, double h, double m) {
    const double x = p[0], y = p[1];
    if (y < -m) return 1;
    if (y > h + m) return 2;
    if (x < -m) return 3;
    if (x > w + m) return 4;
    return 0;
}

/* cut(px, n, w, h, margin, out): the points of int32 (n, 2) px worth drawing into the canvas
 * (dlprep.formats.osm_draw.outside_runs: all but the inner points of runs beyond the margin on
 * one side) copied into int32 out; returns how many. */
static PyObject *py_cut(PyObject *self, PyObject *args) {
    Py_buffer px, out;
    Py_ssize_t n;
    double w, h, m;
    if (!PyArg_ParseTuple(args, "y*ndddw*", &px, &n, &w, &h, &m, &out)) return NULL;
    PyObject *result = NULL;
    if (n < 0 || !check(&px, 8 * n, "px") || !check(&out, 8 * n, "out")) goto done;
    const int32_t *p = (const int32_t *)px.buf;
    int32_t *o = (int32_t *)out.buf;
    Py_ssize_t k = 0;
    int prev = -1, here = n ? side(p, w, h, m) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int next = i + 1 < n ? side(p + 2 * (i + 1), w, h, m) : -1;
        if (i == 0 || i == n - 1 || here == 0 || here != prev || here != next) {
            o[2 * k] = p[2 * i];
            o[2 * k + 1] = p[2 * i + 1];
            k++;
        }
        prev = here;
        here = next;
    }
    result = PyLong_FromSsize_t(k);
done:
    PyBuffer_Release(&px);
    PyBuffer_Release(&out);
    return result;
}

/* parity(px, n, r_lo, r_hi, c_lo, c_hi, size, out): the tile centres inside the closed ring
 * float64 (n, 2) px (pixels) by the even-odd rule, into uint8 out (h, w + 1) as 0/1 in its
 * first w columns (h = r_hi - r_lo, w = c_hi - c_lo): dlprep.formats.osm_cover._ring_parity,
 * the same arithmetic in the same order (built without contraction into fused multiply-adds). */
static void toggle(const double *a, const double *b, Py_ssize_t r_lo, Py_ssize_t r_hi,
                   Py_ssize_t c_lo, Py_ssize_t c_hi, double size, uint8_t *t, Py_ssize_t w1) {
    const double x0 = a[0], y0 = a[1], x1 = b[0], y1 = b[1];
    const double lo = y0 < y1 ? y0 : y1, hi = y0 < y1 ? y1 : y0;
    double first = ceil(lo / size - 0.5), stop = ceil(hi / size - 0.5);
    if (first < (double)r_lo) first = (double)r_lo;
    if (stop > (double)r_hi) stop = (double)r_hi;
    for (int64_t r = (int64_t)first; r < (int64_t)stop; r++) {
        const double yc = ((double)r + 0.5) * size;
        const double xc = x0 + (yc - y0) * (x1 - x0) / (y1 - y0);
        double c = floor(xc / size - 0.5) + 1.0;
        if (c < (double)c_lo) c = (double)c_lo;
        if (c > (double)c_hi) c = (double)c_hi;
        t[(r - r_lo) * w1 + ((int64_t)c - c_lo)] ^= 1;
    }
}

static PyObject *py_parity(PyObject *self, PyObject *args) {
    Py_buffer px, out;
    Py_ssize_t n, r_lo, r_hi, c_lo, c_hi;
    double size;
    if (!PyArg_ParseTuple(args, "y*nnnnndw*", &px, &n, &r_lo, &r_hi, &c_lo, &c_hi, &size,
                          &out))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t h = r_hi - r_lo, w = c_hi - c_lo;
    if (n < 0 || h < 0 || w < 0 || !(size > 0) || !check(&px, 16 * n, "px") ||
        !check(&out, h * (w + 1), "out"))
        goto done;
    const double *p = (const double *)px.buf;
    uint8_t *t = (uint8_t *)out.buf;
    memset(t, 0, (size_t)(h * (w + 1)));
    for (Py_ssize_t i = 0; i + 1 < n; i++) toggle(p + 2 * i, p + 2 * i + 2, r_lo, r_hi, c_lo, c_hi, size, t, w + 1);
    if (n && (p[0] != p[2 * n - 2] || p[1] != p[2 * n - 1]))  /* closed as drawn */
        toggle(p + 2 * n - 2, p, r_lo, r_hi, c_lo, c_hi, size, t, w + 1);
    for (Py_ssize_t r = 0; r < h; r++) {
        uint8_t acc = 0, *row = t + r * (w + 1);
        for (Py_ssize_t c = 0; c < w; c++) row[c] = acc ^= row[c];
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&px);
    PyBuffer_Release(&out);
    return result;
}

/* mark(px, pad, seg, m, rows, cols, size, piece, out): the tiles near the points and segments
 * of float64 (m, 2) px (pixels) set to 1 in uint8 out (rows, cols): dlprep.formats.osm_cover's
 * dirty_tiles. Each point marks the tiles its box (pad[i] around it) meets; a point with
 * seg[i] set also starts a segment to point i + 1, cut into pieces at most `piece` long, and
 * each piece marks the tiles its bounding box, widened by pad[i], meets. */
static inline void mark_box(double x0, double x1, double y0, double y1, double size,
                            Py_ssize_t rows, Py_ssize_t cols, uint8_t *out) {
    double c0 = floor(x0 / size), c1 = floor(x1 / size);
    double r0 = floor(y0 / size), r1 = floor(y1 / size);
    c0 = c0 < 0 ? 0 : (c0 > (double)cols ? (double)cols : c0);
    c1 = c1 < -1 ? -1 : (c1 > (double)(cols - 1) ? (double)(cols - 1) : c1);
    r0 = r0 < 0 ? 0 : (r0 > (double)rows ? (double)rows : r0);
    r1 = r1 < -1 ? -1 : (r1 > (double)(rows - 1) ? (double)(rows - 1) : r1);
    for (Py_ssize_t r = (Py_ssize_t)r0; r <= (Py_ssize_t)r1; r++)
        for (Py_ssize_t c = (Py_ssize_t)c0; c <= (Py_ssize_t)c1; c++) out[r * cols + c] = 1;
}

static PyObject *py_mark(PyObject *self, PyObject *args) {
    Py_buffer px, pad, seg, out;
    Py_ssize_t m, rows, cols;
    double size, piece;
    if (!PyArg_ParseTuple(args, "y*y*y*nnnddw*", &px, &pad, &seg, &m, &rows, &cols, &size,
                          &piece, &out))
        return NULL;
    PyObject *result = NULL;
    if (m < 0 || rows < 0 || cols < 0 || !(size > 0) || !(piece > 0) ||
        !check(&px, 16 * m, "px") || !check(&pad, 8 * m, "pad") || !check(&seg, m, "seg") ||
        !check(&out, rows * cols, "out"))
        goto done;
    const double *p = (const double *)px.buf, *pd = (const double *)pad.buf;
    const uint8_t *sg = (const uint8_t *)seg.buf;
    uint8_t *o = (uint8_t *)out.buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        const double x = p[2 * i], y = p[2 * i + 1], pp = pd[i];
        mark_box(x - pp, x + pp, y - pp, y + pp, size, rows, cols, o);
        if (!sg[i] || i + 1 >= m) continue;
        const double dx = p[2 * i + 2] - x, dy = p[2 * i + 3] - y;
        double nf = ceil(hypot(dx, dy) / piece);
        const int64_t n = nf < 1 ? 1 : (int64_t)nf;
        for (int64_t k = 0; k < n; k++) {
            const double t0 = (double)k / (double)n, t1 = (double)(k + 1) / (double)n;
            const double ax = x + dx * t0, ay = y + dy * t0, bx = x + dx * t1, by = y + dy * t1;
            mark_box((ax < bx ? ax : bx) - pp, (ax < bx ? bx : ax) + pp,
                     (ay < by ? ay : by) - pp, (ay < by ? by : ay) + pp, size, rows, cols, o);
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&px);
    PyBuffer_Release(&pad);
    PyBuffer_Release(&seg);
    PyBuffer_Release(&out);
    return result;
}

/* assemble(buf, fill, k, tile_bytes, channels, codes, ats, i, n, tiles): kept tiles i, i + 1,
 * ... copied into the chunk buffer (k tiles of tile_bytes) from tile `fill` on, until it is full
 * or tile n is reached: codes[j] < 0 a drawn tile, tiles[ats[j]]; else a whole-tile value,
 * channel c 255 where bit c of codes[j] is set, else 0. Returns (next tile, fill). */
static void uniform_tile(uint8_t *dst, int64_t bits, Py_ssize_t channels, Py_ssize_t tb) {
    for (Py_ssize_t c = 0; c < channels; c++) dst[c] = (bits >> c) & 1 ? 255 : 0;
    Py_ssize_t done = channels;
    while (done < tb) {  /* doubling copies of the pixel pattern */
        Py_ssize_t take = done < tb - done ? done : tb - done;
        memcpy(dst + done, dst, (size_t)take);
        done += take;
    }
}

static PyObject *py_assemble(PyObject *self, PyObject *args) {
    Py_buffer buf, codes, ats, tiles;
    Py_ssize_t fill, k, tb, channels, i, n;
    if (!PyArg_ParseTuple(args, "w*nnnny*y*nny*", &buf, &fill, &k, &tb, &channels, &codes,
                          &ats, &i, &n, &tiles))
        return NULL;
    PyObject *result = NULL;
    if (k < 1 || tb < 1 || channels < 1 || channels > 62 || fill < 0 || fill > k || i < 0 ||
        n < i || !check(&buf, k * tb, "buf") || !check(&codes, 8 * n, "codes") ||
        !check(&ats, 8 * n, "ats"))
        goto done;
    const int64_t *cd = (const int64_t *)codes.buf, *at = (const int64_t *)ats.buf;
    const Py_ssize_t m = tiles.len / tb;
    for (Py_ssize_t j = i; j < n && j < i + (k - fill); j++) {
        if (cd[j] < 0 && (at[j] < 0 || at[j] >= m)) {
            PyErr_SetString(PyExc_ValueError, "_osmpack: a drawn tile beyond the tiles");
            goto done;
        }
    }
    uint8_t *b = (uint8_t *)buf.buf;
    const uint8_t *t = (const uint8_t *)tiles.buf;
    while (i < n && fill < k) {
        uint8_t *dst = b + fill * tb;
        if (cd[i] < 0)
            memcpy(dst, t + at[i] * tb, (size_t)tb);
        else
            uniform_tile(dst, cd[i], channels, tb);
        fill++;
        i++;
    }
    result = Py_BuildValue("nn", i, fill);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&ats);
    PyBuffer_Release(&tiles);
    return result;
}

static PyMethodDef methods[] = {
    {"assemble", py_assemble, METH_VARARGS, "Kept tiles copied into a chunk buffer."},
    {"mark", py_mark, METH_VARARGS, "Tiles near points and segments (dirty tiles)."},
    {"parity", py_parity, METH_VARARGS, "Tile centres inside a ring (even-odd)."},
    {"cut", py_cut, METH_VARARGS, "Points of a path worth drawing into a canvas."},
    {"pack", py_pack, METH_VARARGS, "Dirty tiles of a drawn canvas, packed (see the module)."},
    {"labels", py_labels, METH_VARARGS, "Majority label id per tile (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_osmpack",
                                    "Compiled kernels of dlprep.formats.osm_pack.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__osmpack(void) { return PyModule_Create(&module); }
