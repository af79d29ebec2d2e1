/*
 * One call that decodes a JPEG held in memory with libjpeg(-turbo)'s decoder the way Pillow 13
 * does on `Image.open(f).convert("RGB")` (src/libImaging/JpegDecode.c, ImageFile.load):
 *
 * - the library's decoding defaults, which Pillow keeps unless draft mode is asked for: accurate
 *   integer IDCT, fancy upsampling, block smoothing of progressive scans, no scaling;
 * - out_color_space by the number of components in the frame header (1: grayscale, 3: RGB,
 *   4: CMYK), the JPEG colour space left to libjpeg's guess (JFIF / Adobe / component ids);
 * - warnings ignored (Pillow's output_message is empty);
 * - the data fed as Pillow feeds it: a suspending source given the file in 65,536-byte reads
 *   (ImageFile.MAXBLOCK), the bytes the decoder did not consume handed back with the next read.
 *   Whether a file that ends early decodes depends on where the decoder suspends (libjpeg's
 *   Huffman decoder reads ahead, by how much depends on the bytes in its buffer), so the same
 *   reads give the same verdict: a decoder that still wants data when the file is exhausted is
 *   Pillow's "image file is truncated"; a missing EOI after the last row is not an error.
 *
 * The IDCT is replaced (mozjpeg's jpeg_set_idct_method_selector) by ovb_idct_islow below, which
 * computes what libjpeg-turbo's x86 SIMD islow IDCT (SSE2 and AVX2 alike) computes, the one that
 * Pillow's x86-64 wheels run. On every coefficient block a real encoder writes it equals the C
 * islow IDCT that mozjpeg-sys builds without nasm; they part only on blocks whose values leave
 * 16 bits or the sample range (corrupt entropy-coded data), where the C code wraps around and
 * the SIMD code saturates.
 *
 * libjpeg's default error handler prints and calls exit(); here every error returns through
 * setjmp/longjmp inside this file (no unwinding across the Rust boundary), with the library's
 * message.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeglib.h"
#include "jerror.h"

/* Twice PIL.Image.MAX_IMAGE_PIXELS: the size beyond which Image.open raises. */
#define OVB_MAX_PIXELS (2ULL * 89478485ULL)

/* Pillow's ImageFile.MAXBLOCK: the size of each read handed to the decoder. */
#define OVB_READ_BLOCK 65536

struct ovb_error {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

/* Pillow's JPEGSOURCE: a suspending source with a pending skip. */
struct ovb_source {
  struct jpeg_source_mgr pub;
  size_t skip;
};

struct ovb_state {
  struct jpeg_decompress_struct cinfo;
  struct ovb_error err;
  struct ovb_source src;
  unsigned char *pixels;
  /* Pillow's state->state: 1 header, 2 start, 3 rows, 4 finish. */
  int stage;
  JDIMENSION row_stride;
  /* Bytes read from the file so far, and bytes the decoder has consumed. */
  size_t read, used;
};

static void ovb_error_exit(j_common_ptr cinfo) {
  struct ovb_error *err = (struct ovb_error *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

static void ovb_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void ovb_src_noop(j_decompress_ptr cinfo) { (void)cinfo; }

/* No more data in this read: suspend (the caller feeds the next read). */
static boolean ovb_src_fill(j_decompress_ptr cinfo) {
  (void)cinfo;
  return FALSE;
}

static void ovb_src_skip(j_decompress_ptr cinfo, long num_bytes) {
  struct ovb_source *src = (struct ovb_source *)cinfo->src;
  if (num_bytes > (long)src->pub.bytes_in_buffer) {
    /* Past this read: remember the rest and skip it from the next one. */
    src->skip = (size_t)num_bytes - src->pub.bytes_in_buffer;
    src->pub.next_input_byte += src->pub.bytes_in_buffer;
    src->pub.bytes_in_buffer = 0;
  } else if (num_bytes > 0) {
    src->pub.bytes_in_buffer -= (size_t)num_bytes;
    src->pub.next_input_byte += num_bytes;
    src->skip = 0;
  }
}

/* ---- The islow IDCT with x86 SIMD arithmetic (jidctint-sse2.asm / -avx2.asm) ----
 * Same algorithm and constants as jidctint.c (Loeffler-Ligtenberg-Moschytz, CONST_BITS 13,
 * PASS1_BITS 2), but with the vector code's word sizes: dequantisation keeps the low 16 bits
 * (pmullw), 16-bit sums wrap (paddw), products of pairs are summed in 32 bits (pmaddwd), each
 * pass's results saturate to 16 bits (packssdw), the output saturates to -128..127 (packsswb)
 * before +128, and pass 1 has one shortcut: when rows 1-7 of the coefficient block are all
 * zero, every column is its dequantised DC shifted left in 16 bits (psllw). */

#define OVB_F_0_298 2446
#define OVB_F_0_390 3196
#define OVB_F_0_541 4433
#define OVB_F_0_765 6270
#define OVB_F_0_899 7373
#define OVB_F_1_175 9633
#define OVB_F_1_501 12299
#define OVB_F_1_847 15137
#define OVB_F_1_961 16069
#define OVB_F_2_053 16819
#define OVB_F_2_562 20995
#define OVB_F_3_072 25172

static short ovb_wrap16(long v) { return (short)(unsigned short)(unsigned long)v; }

static short ovb_sat16(long v) { return (short)(v > 32767 ? 32767 : v < -32768 ? -32768 : v); }

/* 32-bit two's-complement arithmetic, as the vector lanes do it. */
static long ovb_w32(long long v) { return (long)(int)(unsigned int)(unsigned long long)v; }

/* pmaddwd: a * b + c * d of 16-bit values, summed in 32 bits. */
static long ovb_madd(short a, int b, short c, int d) {
  return ovb_w32((long long)a * (short)b + (long long)c * (short)d);
}

/* One 8-point pass; `shift` is 11 (pass 1) or 18 (pass 2). */
static void ovb_idct_1d(const short in[8], short out[8], int shift) {
  long tmp0, tmp1, tmp2, tmp3, tmp10, tmp11, tmp12, tmp13, z3, z4, o0, o1, o2, o3;
  long round = 1L << (shift - 1);
  /* even part */
  tmp0 = (long)ovb_wrap16((long)in[0] + in[4]) * 8192;
  tmp1 = (long)ovb_wrap16((long)in[0] - in[4]) * 8192;
  tmp3 = ovb_madd(in[2], OVB_F_0_541 + OVB_F_0_765, in[6], OVB_F_0_541);
  tmp2 = ovb_madd(in[2], OVB_F_0_541, in[6], OVB_F_0_541 - OVB_F_1_847);
  tmp10 = ovb_w32((long long)tmp0 + tmp3);
  tmp13 = ovb_w32((long long)tmp0 - tmp3);
  tmp11 = ovb_w32((long long)tmp1 + tmp2);
  tmp12 = ovb_w32((long long)tmp1 - tmp2);
  /* odd part */
  {
    short s3 = ovb_wrap16((long)in[7] + in[3]), s4 = ovb_wrap16((long)in[5] + in[1]);
    z3 = ovb_madd(s3, OVB_F_1_175 - OVB_F_1_961, s4, OVB_F_1_175);
    z4 = ovb_madd(s3, OVB_F_1_175, s4, OVB_F_1_175 - OVB_F_0_390);
  }
  o0 = ovb_w32((long long)ovb_madd(in[7], OVB_F_0_298 - OVB_F_0_899, in[1], -OVB_F_0_899) + z3);
  o1 = ovb_w32((long long)ovb_madd(in[5], OVB_F_2_053 - OVB_F_2_562, in[3], -OVB_F_2_562) + z4);
  o3 = ovb_w32((long long)ovb_madd(in[7], -OVB_F_0_899, in[1], OVB_F_1_501 - OVB_F_0_899) + z4);
  o2 = ovb_w32((long long)ovb_madd(in[5], -OVB_F_2_562, in[3], OVB_F_3_072 - OVB_F_2_562) + z3);
  /* output stage: (x + round) >> shift in 32 bits (psrad is arithmetic), saturated */
#define OVB_OUT(x) ovb_sat16(ovb_w32((long long)ovb_w32(x) + round) >> shift)
  out[0] = OVB_OUT((long long)tmp10 + o3);
  out[7] = OVB_OUT((long long)tmp10 - o3);
  out[1] = OVB_OUT((long long)tmp11 + o2);
  out[6] = OVB_OUT((long long)tmp11 - o2);
  out[2] = OVB_OUT((long long)tmp12 + o1);
  out[5] = OVB_OUT((long long)tmp12 - o1);
  out[3] = OVB_OUT((long long)tmp13 + o0);
  out[4] = OVB_OUT((long long)tmp13 - o0);
#undef OVB_OUT
}

static void ovb_idct_islow(j_decompress_ptr cinfo, jpeg_component_info *compptr,
                           JCOEFPTR coef_block, JSAMPARRAY output_buf,
                           JDIMENSION output_col) {
  /* The multiplier table libjpeg built for the islow IDCT: the quantisation values, as int
   * (MULTIPLIER without SIMD); pmullw keeps the low 16 bits of the product either way. */
  const int *quant = (const int *)compptr->dct_table;
  short ws[8][8], col[8], res[8];
  int r, c, ac_zero = 1;
  (void)cinfo;
  for (r = 8; r < 64; r++)
    if (coef_block[r] != 0) {
      ac_zero = 0;
      break;
    }
  /* pass 1: columns */
  for (c = 0; c < 8; c++) {
    if (ac_zero) {
      short dc = ovb_wrap16((long)coef_block[c] * quant[c]);
      short v = ovb_wrap16((long)(unsigned short)dc << 2);
      for (r = 0; r < 8; r++)
        ws[r][c] = v;
      continue;
    }
    for (r = 0; r < 8; r++)
      col[r] = ovb_wrap16((long)coef_block[r * 8 + c] * quant[r * 8 + c]);
    ovb_idct_1d(col, res, 11);
    for (r = 0; r < 8; r++)
      ws[r][c] = res[r];
  }
  /* pass 2: rows */
  for (r = 0; r < 8; r++) {
    JSAMPROW outptr = output_buf[r] + output_col;
    ovb_idct_1d(ws[r], res, 18);
    for (c = 0; c < 8; c++) {
      int v = res[c] > 127 ? 127 : res[c] < -128 ? -128 : res[c];
      outptr[c] = (JSAMPLE)(v + 128);
    }
  }
}

static void ovb_idct_selector(j_decompress_ptr cinfo, jpeg_component_info *compptr,
                              jpeg_idct_method *method, int *category) {
  (void)cinfo;
  if (*category == JDCT_ISLOW && compptr->DCT_scaled_size == DCTSIZE)
    *method = ovb_idct_islow;
}

static void ovb_set_message(char *out, const char *text) {
  strncpy(out, text, JMSG_LENGTH_MAX - 1);
  out[JMSG_LENGTH_MAX - 1] = '\0';
}

/* The state machine of Pillow's ImagingJpegDecode, run on one read: returns 1 when the image is
 * complete, 0 when the decoder suspended and wants the next read. */
static int ovb_step(struct ovb_state *st) {
  int ok;
  JSAMPROW row;
  size_t total;
  switch (st->stage) {
  case 1:
    do
      ok = jpeg_read_header(&st->cinfo, FALSE);
    while (ok == JPEG_HEADER_TABLES_ONLY);
    if (ok == JPEG_SUSPENDED)
      return 0;
    switch (st->cinfo.num_components) {
    case 1:
      st->cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case 3:
      st->cinfo.out_color_space = JCS_RGB;
      break;
    case 4:
      st->cinfo.out_color_space = JCS_CMYK;
      break;
    default:
      snprintf(st->err.message, JMSG_LENGTH_MAX, "cannot handle %d-component images",
               st->cinfo.num_components);
      longjmp(st->err.jump, 1);
    }
    /* libjpeg's defaults, set here so that a change of library defaults cannot slip in. */
    st->cinfo.dct_method = JDCT_ISLOW;
    st->cinfo.do_fancy_upsampling = TRUE;
    st->cinfo.do_block_smoothing = TRUE;
    st->cinfo.scale_num = 1;
    st->cinfo.scale_denom = 1;
    st->cinfo.quantize_colors = FALSE;
    st->stage = 2;
    /* fall through */
  case 2:
    /* Pillow refuses an image of more than twice Image.MAX_IMAGE_PIXELS (89,478,485) pixels
       (DecompressionBombError) before decoding it; so does this, before any buffer is sized. */
    if ((unsigned long long)st->cinfo.image_width * st->cinfo.image_height > OVB_MAX_PIXELS) {
      snprintf(st->err.message, JMSG_LENGTH_MAX,
               "image of %u x %u pixels: more than %llu pixels (Pillow's decompression-bomb limit)",
               (unsigned)st->cinfo.image_width, (unsigned)st->cinfo.image_height,
               (unsigned long long)OVB_MAX_PIXELS);
      longjmp(st->err.jump, 1);
    }
    if (!jpeg_start_decompress(&st->cinfo))
      return 0;
    st->row_stride = st->cinfo.output_width * (JDIMENSION)st->cinfo.output_components;
    if (st->cinfo.output_height != 0 &&
        (size_t)st->row_stride > ((size_t)-1) / st->cinfo.output_height) {
      ovb_set_message(st->err.message, "image too large");
      longjmp(st->err.jump, 1);
    }
    total = (size_t)st->row_stride * st->cinfo.output_height;
    st->pixels = (unsigned char *)malloc(total ? total : 1);
    if (st->pixels == NULL) {
      ovb_set_message(st->err.message, "out of memory");
      longjmp(st->err.jump, 1);
    }
    st->stage = 3;
    /* fall through */
  case 3:
    while (st->cinfo.output_scanline < st->cinfo.output_height) {
      row = st->pixels + (size_t)st->cinfo.output_scanline * st->row_stride;
      if (jpeg_read_scanlines(&st->cinfo, &row, 1) != 1)
        return 0;
    }
    st->stage = 4;
    /* fall through */
  default:
    /* Suspending here with every row read is not an error (Pillow: a missing EOI). */
    jpeg_finish_decompress(&st->cinfo);
    return 1;
  }
}

/* Decodes data[0..len); flags bit 0 keeps libjpeg's own C islow IDCT (for tests that show what
 * the SIMD arithmetic changes). On success returns 0 and sets *pixels (malloc'd, width * height *
 * components bytes, rows top to bottom; free with ovb_jpeg_free), *width, *height and
 * *components (1 grey, 3 RGB, 4 CMYK as libjpeg writes it: Adobe's inverted values). On
 * failure returns 1 with a NUL-terminated message in message[0..message_len). */
int ovb_jpeg_decode(const unsigned char *data, size_t len, int flags, unsigned char **pixels,
                    unsigned int *width, unsigned int *height, int *components,
                    char *message, size_t message_len) {
  struct ovb_state *st;

  *pixels = NULL;
  if (message_len < JMSG_LENGTH_MAX)
    return 2;
  message[0] = '\0';
  if (len == 0) {
    ovb_set_message(message, "empty input");
    return 1;
  }
  st = (struct ovb_state *)calloc(1, sizeof(struct ovb_state));
  if (st == NULL) {
    ovb_set_message(message, "out of memory");
    return 1;
  }
  st->cinfo.err = jpeg_std_error(&st->err.pub);
  st->err.pub.error_exit = ovb_error_exit;
  st->err.pub.output_message = ovb_output_message;
  if (setjmp(st->err.jump)) {
    memcpy(message, st->err.message, JMSG_LENGTH_MAX);
    message[JMSG_LENGTH_MAX - 1] = '\0';
    jpeg_destroy_decompress(&st->cinfo);
    free(st->pixels);
    free(st);
    return 1;
  }
  st->stage = 1;
  jpeg_create_decompress(&st->cinfo);
  if (!(flags & 1))
    jpeg_set_idct_method_selector(&st->cinfo, ovb_idct_selector);
  st->src.pub.init_source = ovb_src_noop;
  st->src.pub.fill_input_buffer = ovb_src_fill;
  st->src.pub.skip_input_data = ovb_src_skip;
  st->src.pub.resync_to_restart = jpeg_resync_to_restart;
  st->src.pub.term_source = ovb_src_noop;
  st->src.pub.bytes_in_buffer = 0;
  st->cinfo.src = &st->src.pub;

  for (;;) {
    if (st->read == len) {
      snprintf(st->err.message, JMSG_LENGTH_MAX,
               "image file is truncated (%lu bytes not processed)",
               (unsigned long)(len - st->used));
      longjmp(st->err.jump, 1);
    }
    st->read = len - st->read > OVB_READ_BLOCK ? st->read + OVB_READ_BLOCK : len;
    st->src.pub.next_input_byte = data + st->used;
    st->src.pub.bytes_in_buffer = st->read - st->used;
    if (st->src.skip > 0) {
      ovb_src_skip(&st->cinfo, (long)st->src.skip);
      if (st->src.skip > 0) {
        st->used = (size_t)(st->src.pub.next_input_byte - data);
        continue;
      }
    }
    if (ovb_step(st))
      break;
    st->used = (size_t)(st->src.pub.next_input_byte - data);
  }
  *pixels = st->pixels;
  *width = st->cinfo.output_width;
  *height = st->cinfo.output_height;
  *components = st->cinfo.output_components;
  jpeg_destroy_decompress(&st->cinfo);
  free(st);
  return 0;
}

void ovb_jpeg_free(unsigned char *pixels) { free(pixels); }
