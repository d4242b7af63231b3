/*
 * In-process video decoding with FFmpeg's libraries (libvswift_decode.so), the loader's fast path
 * beside one ffmpeg process per clip (lib/data/ffmpeg.ts), which stays the fallback; and vsd_probe, the
 * in-process twin of the loader's ffprobe call.
 *
 * A worker (vsd_worker) belongs to one thread at a time and is kept across clips: its frame, packet,
 * scaler context and scaled-frame buffer are reused, and so is its decoder. Each clip opens its own
 * demuxer (a file per clip), but the previous clip's decoder is flushed and reused when the next clip's
 * codec parameters are the same (codec, tag, pixel format, size, profile, level, colour properties,
 * aspect ratio, reorder delay, extradata bytes, time base; not the bit rate, which no decoder reads),
 * which saves allocating and initialising a decoder and its frame pool per clip. The saving is small:
 * opening an H.264 decoder costs about 60 us of CPU, decoding 16 frames at stride 4 of a 3 s chunk at
 * 454x256 about 30 ms (measured on the bench:loader chunks). Reuse is limited to where a flushed
 * decoder decodes exactly as a freshly opened one: H.264 with its parameter sets in the extradata
 * (avcC), when the previous clip sent none in its packets (they would outlive the flush) and the new
 * clip starts on an IDR frame (an open-GOP start reads state that an IDR resets); VP8 and VP9 when the
 * new clip starts on a keyframe (which resets their state). The reorder delay and the
 * timestamp-correction counters, which a flush keeps, are set back to their values after opening. (The H.264
 * decoder also keeps the x264 build number read from the stream, which it acts on only for builds
 * before 44, from 2006, and for 4:4:4 streams, refused here.) A clip that hit a decoding error does not
 * hand its decoder on, and anything else reopens. tests/decode_test.ts checks that clips decoded one
 * after another on one worker give the bytes of fresh workers.
 *
 * vsd_decode mirrors what the ffmpeg command of lib/data/ffmpeg.ts does, so that both give the same
 * pixels: one decoding thread; for a constant frame rate and a first frame >= 8 a seek half a frame
 * before the first wanted frame (to the keyframe before it, decoding forward and dropping earlier
 * frames, as ffmpeg's accurate input seek does), otherwise decoding from the start; frames counted in
 * decoding order from there; a bilinear swscale to the scaled size, then the crop. Decoding stops at the
 * last wanted frame.
 *
 * Only yuv420p sources are taken (the output formats are yuv420p and rgb24 and the pixel-equality
 * tests cover those conversions); anything else returns VSD_REFUSED and the caller uses the ffmpeg
 * process. Errors never abort: they come back as a status and a message.
 */
#include <inttypes.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VSD_EXPORT __attribute__((visibility("default")))

enum { VSD_OK = 0, VSD_ERROR = -1, VSD_REFUSED = -2 };
enum { VSD_RGB24 = 0, VSD_YUV420P = 1 };

typedef struct {
  AVFrame* frame;
  AVPacket* pkt;
  struct SwsContext* sws;
  uint8_t* scaled; /* the scaled frame before the crop */
  size_t scaled_cap;
  AVCodecContext* cc;      /* the decoder kept from the last clip, or NULL */
  AVCodecParameters* par;  /* the parameters it was opened with */
  AVRational tb;           /* and the stream time base */
  int delay;               /* its has_b_frames right after opening */
  int parameter_sets;      /* the last clip sent H.264 parameter sets in its packets */
  int64_t opened, reused;  /* decoders opened and reused, for tests and benchmarks */
} vsd_worker;

VSD_EXPORT int vsd_abi_version(void) {
  return 2;
}

/* FFmpeg's own messages (e.g. "moov atom not found") are kept per thread instead of printed, and the
 * last error-level one is added to the reason a decode failed, as the ffmpeg process's stderr is. */
static _Thread_local char t_last_log[256];

static void log_callback(void* avcl, int level, const char* fmt, va_list ap) {
  if (level > AV_LOG_ERROR) {
    return;
  }
  vsnprintf(t_last_log, sizeof t_last_log, fmt, ap);
  const size_t len = strlen(t_last_log);
  if (len > 0 && t_last_log[len - 1] == '\n') {
    t_last_log[len - 1] = '\0';
  }
}

__attribute__((constructor)) static void install_log_callback(void) {
  av_log_set_callback(log_callback);
}

VSD_EXPORT vsd_worker* vsd_create(void) {
  vsd_worker* w = calloc(1, sizeof *w);
  if (w == NULL) {
    return NULL;
  }
  w->frame = av_frame_alloc();
  w->pkt = av_packet_alloc();
  if (w->frame == NULL || w->pkt == NULL) {
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    free(w);
    return NULL;
  }
  return w;
}

VSD_EXPORT void vsd_destroy(vsd_worker* w) {
  if (w == NULL) {
    return;
  }
  av_frame_free(&w->frame);
  av_packet_free(&w->pkt);
  sws_freeContext(w->sws);
  av_free(w->scaled);
  avcodec_free_context(&w->cc);
  avcodec_parameters_free(&w->par);
  free(w);
}

/* out[0]: decoders opened, out[1]: decoders reused, over the worker's life. */
VSD_EXPORT void vsd_stats(const vsd_worker* w, int64_t* out) {
  out[0] = w != NULL ? w->opened : 0;
  out[1] = w != NULL ? w->reused : 0;
}

static int fail(char* err, int err_len, int status, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char* err, int err_len, int status, const char* fmt, ...) {
  if (err != NULL && err_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, (size_t)err_len, fmt, ap);
    va_end(ap);
  }
  return status;
}

static const char* av_message(int code, char* buf, size_t len) {
  av_strerror(code, buf, len);
  return buf;
}

/* The request: frames idx[0..n) (increasing), the full scaled size, the crop, the output format. */
typedef struct {
  const int64_t* idx;
  int32_t n;
  int32_t seek;
  double fps;
  int32_t full_w;
  int32_t full_h;
  int32_t rx;
  int32_t ry;
  int32_t rw;
  int32_t rh;
  int32_t format;
  uint8_t* out;
} request;

static int64_t frame_bytes(const request* r) {
  return r->format == VSD_YUV420P ? (int64_t)r->rw * r->rh * 3 / 2 : (int64_t)r->rw * r->rh * 3;
}

/* Scales `f` to the full size (when it differs) and copies the region into frame slot k of out. */
static int emit(vsd_worker* w, const request* r, const AVFrame* f, int32_t k, char* err, int err_len) {
  const int scaled = f->width != r->full_w || f->height != r->full_h || r->format == VSD_RGB24;
  const enum AVPixelFormat dst_fmt = r->format == VSD_YUV420P ? AV_PIX_FMT_YUV420P : AV_PIX_FMT_RGB24;
  const uint8_t* planes[4] = {f->data[0], f->data[1], f->data[2], NULL};
  int strides[4] = {f->linesize[0], f->linesize[1], f->linesize[2], 0};
  if (scaled) {
    w->sws = sws_getCachedContext(w->sws, f->width, f->height, (enum AVPixelFormat)f->format, r->full_w,
                                  r->full_h, dst_fmt, SWS_BILINEAR, NULL, NULL, NULL);
    if (w->sws == NULL) {
      return fail(err, err_len, VSD_ERROR, "no scaler from %dx%d to %dx%d", f->width, f->height, r->full_w,
                  r->full_h);
    }
    const int size = av_image_get_buffer_size(dst_fmt, r->full_w, r->full_h, 32);
    if (size < 0) {
      return fail(err, err_len, VSD_ERROR, "bad scaled size %dx%d", r->full_w, r->full_h);
    }
    if ((size_t)size > w->scaled_cap) {
      av_free(w->scaled);
      w->scaled = av_malloc((size_t)size);
      w->scaled_cap = w->scaled != NULL ? (size_t)size : 0;
      if (w->scaled == NULL) {
        return fail(err, err_len, VSD_ERROR, "out of memory for a %d byte frame", size);
      }
    }
    uint8_t* dst[4];
    int dst_stride[4];
    av_image_fill_arrays(dst, dst_stride, w->scaled, dst_fmt, r->full_w, r->full_h, 32);
    sws_scale(w->sws, (const uint8_t* const*)f->data, f->linesize, 0, f->height, dst, dst_stride);
    for (int p = 0; p < 3; p++) {
      planes[p] = dst[p];
      strides[p] = dst_stride[p];
    }
  }
  uint8_t* o = r->out + (int64_t)k * frame_bytes(r);
  if (r->format == VSD_RGB24) {
    for (int y = 0; y < r->rh; y++) {
      memcpy(o + (int64_t)y * r->rw * 3, planes[0] + (int64_t)(r->ry + y) * strides[0] + r->rx * 3,
             (size_t)r->rw * 3);
    }
    return VSD_OK;
  }
  for (int p = 0; p < 3; p++) {
    const int sub = p > 0;
    const int pw = r->rw >> sub;
    const int ph = r->rh >> sub;
    for (int y = 0; y < ph; y++) {
      memcpy(o, planes[p] + (int64_t)((r->ry >> sub) + y) * strides[p] + (r->rx >> sub), (size_t)pw);
      o += pw;
    }
  }
  return VSD_OK;
}

/* The first video stream, as ffmpeg's -map 0:v:0 takes it; -1 when there is none. */
static int first_video_stream(const AVFormatContext* fc) {
  for (unsigned i = 0; i < fc->nb_streams; i++) {
    if (fc->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
      return (int)i;
    }
  }
  return -1;
}

/* H.264 in avcC form (length-prefixed NAL units, parameter sets in the extradata); 0 otherwise. */
static int avcc_length_size(const AVCodecParameters* par) {
  if (par->codec_id != AV_CODEC_ID_H264 || par->extradata_size < 7 || par->extradata[0] != 1) {
    return 0;
  }
  return (par->extradata[4] & 3) + 1;
}

/* Bit t of the result is set when the packet holds a NAL unit of type t (H.264, avcC form). */
static uint32_t avcc_nal_types(const AVPacket* pkt, int length_size) {
  uint32_t types = 0;
  int64_t off = 0;
  while (off + length_size < pkt->size) {
    int64_t len = 0;
    for (int b = 0; b < length_size; b++) {
      len = (len << 8) | pkt->data[off + b];
    }
    off += length_size;
    if (len < 1 || len > pkt->size - off) {
      break;
    }
    types |= 1u << (pkt->data[off] & 0x1f);
    off += len;
  }
  return types;
}

enum { NAL_IDR = 5, NAL_SPS = 7, NAL_PPS = 8 };

static int same_parameters(const AVCodecParameters* a, const AVCodecParameters* b) {
  /* bit_rate differs from file to file and no decoder reads it. */
  return a->codec_id == b->codec_id && a->codec_tag == b->codec_tag && a->format == b->format &&
         a->width == b->width && a->height == b->height && a->profile == b->profile && a->level == b->level &&
         a->field_order == b->field_order && a->color_range == b->color_range &&
         a->color_primaries == b->color_primaries && a->color_trc == b->color_trc &&
         a->color_space == b->color_space && a->chroma_location == b->chroma_location &&
         av_cmp_q(a->sample_aspect_ratio, b->sample_aspect_ratio) == 0 && a->video_delay == b->video_delay &&
         a->bits_per_coded_sample == b->bits_per_coded_sample &&
         a->bits_per_raw_sample == b->bits_per_raw_sample && a->extradata_size == b->extradata_size &&
         (a->extradata_size == 0 || memcmp(a->extradata, b->extradata, (size_t)a->extradata_size) == 0);
}

/*
 * Whether the worker's decoder can take the clip that starts with `first` (NULL: no packet) after a
 * flush and decode it exactly as a freshly opened one would (see the file comment).
 */
static int can_reuse(const vsd_worker* w, const AVCodecParameters* par, AVRational tb, const AVPacket* first) {
  if (w->cc == NULL || !same_parameters(w->par, par) || av_cmp_q(w->tb, tb) != 0) {
    return 0;
  }
  if (par->codec_id == AV_CODEC_ID_VP8 || par->codec_id == AV_CODEC_ID_VP9) {
    return first != NULL && (first->flags & AV_PKT_FLAG_KEY);
  }
  const int length_size = avcc_length_size(par);
  return length_size > 0 && !w->parameter_sets && first != NULL &&
         (avcc_nal_types(first, length_size) & (1u << NAL_IDR)) != 0;
}

/* The worker's decoder for this clip: the kept one flushed, or a new one; NULL with err set. */
static AVCodecContext* clip_decoder(vsd_worker* w, const AVCodecParameters* par, AVRational tb,
                                    const AVPacket* first, char* err, int err_len) {
  char msg[128];
  if (can_reuse(w, par, tb, first)) {
    avcodec_flush_buffers(w->cc);
    w->cc->has_b_frames = w->delay;
    w->cc->pts_correction_num_faulty_pts = 0;
    w->cc->pts_correction_num_faulty_dts = 0;
    w->cc->pts_correction_last_pts = INT64_MIN;
    w->cc->pts_correction_last_dts = INT64_MIN;
    w->parameter_sets = 0;
    w->reused++;
    return w->cc;
  }
  avcodec_free_context(&w->cc);
  w->parameter_sets = 0;
  const AVCodec* codec = avcodec_find_decoder(par->codec_id);
  AVCodecContext* cc = avcodec_alloc_context3(codec);
  if (cc == NULL || avcodec_parameters_to_context(cc, par) < 0) {
    avcodec_free_context(&cc);
    fail(err, err_len, VSD_ERROR, "could not set up the %s decoder", codec->name);
    return NULL;
  }
  cc->thread_count = 1;
  cc->pkt_timebase = tb;
  const int ret = avcodec_open2(cc, codec, NULL);
  if (ret < 0) {
    avcodec_free_context(&cc);
    fail(err, err_len, VSD_ERROR, "could not open the %s decoder: %s", codec->name,
         av_message(ret, msg, sizeof msg));
    return NULL;
  }
  if (w->par == NULL) {
    w->par = avcodec_parameters_alloc();
  }
  if (w->par == NULL || avcodec_parameters_copy(w->par, par) < 0) {
    avcodec_free_context(&cc);
    fail(err, err_len, VSD_ERROR, "out of memory for the codec parameters");
    return NULL;
  }
  w->cc = cc;
  w->tb = tb;
  w->delay = cc->has_b_frames;
  w->opened++;
  return cc;
}

/*
 * Seeks, reads the first packet of stream si (kept in w->pkt), takes a decoder for the clip and
 * decodes; returns the frames delivered or VSD_ERROR. The decoder stays with the worker unless
 * something went wrong.
 */
static int decode_loop(vsd_worker* w, AVFormatContext* fc, int si, const request* r, char* err,
                       int err_len) {
  char msg[128];
  const AVStream* st = fc->streams[si];
  const double tb = av_q2d(st->time_base);
  const double start = fc->start_time != AV_NOPTS_VALUE ? (double)fc->start_time / AV_TIME_BASE : 0.0;
  int64_t first = 0;
  double drop_before = -INFINITY;
  if (r->seek) {
    first = r->idx[0];
    drop_before = ((double)first - 0.5) / r->fps;
    const int64_t ts = (int64_t)llround(drop_before * AV_TIME_BASE) +
                       (fc->start_time != AV_NOPTS_VALUE ? fc->start_time : 0);
    const int ret = avformat_seek_file(fc, -1, INT64_MIN, ts, ts, 0);
    if (ret < 0) {
      return fail(err, err_len, VSD_ERROR, "seeking to %.3f s failed: %s", drop_before,
                  av_message(ret, msg, sizeof msg));
    }
  }
  int eof = 0;
  int last_error = 0;
  for (;;) {
    const int ret = av_read_frame(fc, w->pkt);
    if (ret < 0) {
      eof = 1;
      if (ret != AVERROR_EOF) {
        last_error = ret;
      }
      break;
    }
    if (w->pkt->stream_index == si) {
      break;
    }
    av_packet_unref(w->pkt);
  }
  AVCodecContext* cc = clip_decoder(w, st->codecpar, st->time_base, eof ? NULL : w->pkt, err, err_len);
  if (cc == NULL) {
    av_packet_unref(w->pkt);
    return VSD_ERROR;
  }
  const int length_size = avcc_length_size(st->codecpar);
  int pending = !eof; /* w->pkt holds the first packet, not sent yet */
  if (eof) {
    avcodec_send_packet(cc, NULL);
  }
  int64_t count = 0; /* frames that reached the selection, as ffmpeg's select counts them */
  int32_t k = 0;
  int result = VSD_OK;
  while (k < r->n) {
    if (!eof) {
      const int ret = pending ? 0 : av_read_frame(fc, w->pkt);
      pending = 0;
      if (ret < 0) {
        eof = 1;
        if (ret != AVERROR_EOF) {
          last_error = ret;
        }
        avcodec_send_packet(cc, NULL);
      } else if (w->pkt->stream_index != si) {
        av_packet_unref(w->pkt);
        continue;
      } else {
        if (length_size > 0 && (avcc_nal_types(w->pkt, length_size) & (1u << NAL_SPS | 1u << NAL_PPS))) {
          w->parameter_sets = 1;
        }
        const int sent = avcodec_send_packet(cc, w->pkt);
        av_packet_unref(w->pkt);
        /* A damaged packet is skipped, as ffmpeg skips it, and decoding goes on. */
        if (sent < 0 && sent != AVERROR(EAGAIN)) {
          last_error = sent;
        }
      }
    }
    for (;;) {
      const int got = avcodec_receive_frame(cc, w->frame);
      if (got == AVERROR(EAGAIN)) {
        break;
      }
      if (got == AVERROR_EOF) {
        goto done;
      }
      if (got < 0) {
        last_error = got;
        break;
      }
      const int64_t pts = w->frame->best_effort_timestamp;
      const double t = pts != AV_NOPTS_VALUE ? (double)pts * tb - start : 0.0;
      if (t < drop_before) {
        av_frame_unref(w->frame);
        continue;
      }
      if (count == r->idx[k] - first) {
        result = emit(w, r, w->frame, k, err, err_len);
        if (result != VSD_OK) {
          av_frame_unref(w->frame);
          goto done;
        }
        k++;
      }
      count++;
      av_frame_unref(w->frame);
      if (k == r->n) {
        goto done;
      }
    }
  }
done:
  if (last_error != 0 || result != VSD_OK) {
    avcodec_free_context(&w->cc);
  }
  if (result != VSD_OK) {
    return result;
  }
  if (k < r->n) {
    fail(err, err_len, VSD_OK, "decoded %" PRId64 " frames, fewer than the %" PRId64 " asked for%s%s%s%s",
         count + first, r->idx[r->n - 1] + 1, last_error ? ": " : "",
         last_error ? av_message(last_error, msg, sizeof msg) : "", t_last_log[0] ? ": " : "", t_last_log);
  }
  return k;
}

/* Opens `path` and finds its first video stream; returns the stream index or VSD_ERROR with err set. */
static int open_video(const char* path, AVFormatContext** fc, char* err, int err_len) {
  char msg[128];
  t_last_log[0] = '\0';
  int ret = avformat_open_input(fc, path, NULL, NULL);
  if (ret < 0) {
    return fail(err, err_len, VSD_ERROR, "%s%s%s", t_last_log, t_last_log[0] ? ": " : "",
                av_message(ret, msg, sizeof msg));
  }
  ret = avformat_find_stream_info(*fc, NULL);
  if (ret < 0) {
    return fail(err, err_len, VSD_ERROR, "could not read the streams: %s", av_message(ret, msg, sizeof msg));
  }
  const int si = first_video_stream(*fc);
  if (si < 0) {
    return fail(err, err_len, VSD_ERROR, "the file has no video stream");
  }
  return si;
}

/*
 * Decodes frames idx[0..n) of `path` into out (n frames of rw x rh, rgb24 or yuv420p, frame after
 * frame) scaled to full_w x full_h and cropped at (rx, ry). seek: use the keyframe seek (constant
 * frame rate fps only). Returns the number of frames delivered (n, or fewer with the reason in err),
 * VSD_ERROR with the reason in err, or VSD_REFUSED when the file needs the ffmpeg process.
 */
VSD_EXPORT int vsd_decode(vsd_worker* w, const char* path, const int64_t* idx, int32_t n, int32_t seek,
                          double fps, int32_t full_w, int32_t full_h, int32_t rx, int32_t ry, int32_t rw,
                          int32_t rh, int32_t format, uint8_t* out, char* err, int32_t err_len) {
  if (w == NULL || path == NULL || idx == NULL || out == NULL || n < 1 || full_w < 1 || full_h < 1 ||
      rw < 1 || rh < 1 || rx < 0 || ry < 0 || rx + rw > full_w || ry + rh > full_h ||
      (format != VSD_RGB24 && format != VSD_YUV420P) || (seek && !(fps > 0))) {
    return fail(err, err_len, VSD_ERROR, "bad arguments to vsd_decode (n %d, frame %dx%d, region %dx%d at %d,%d)",
                n, full_w, full_h, rw, rh, rx, ry);
  }
  if (format == VSD_YUV420P && (rx % 2 || ry % 2 || rw % 2 || rh % 2)) {
    return fail(err, err_len, VSD_ERROR, "a yuv420p region must have even coordinates, got %dx%d at %d,%d",
                rw, rh, rx, ry);
  }
  for (int32_t i = 1; i < n; i++) {
    if (idx[i] <= idx[i - 1]) {
      return fail(err, err_len, VSD_ERROR, "frame indices must increase");
    }
  }
  AVFormatContext* fc = NULL;
  int result = open_video(path, &fc, err, err_len);
  if (result < 0) {
    goto out;
  }
  const AVCodecParameters* par = fc->streams[result]->codecpar;
  if (par->format != AV_PIX_FMT_YUV420P) {
    const char* name = av_get_pix_fmt_name((enum AVPixelFormat)par->format);
    result = fail(err, err_len, VSD_REFUSED, "pixel format %s is left to the ffmpeg process", name ? name : "unknown");
    goto out;
  }
  if (avcodec_find_decoder(par->codec_id) == NULL) {
    result = fail(err, err_len, VSD_REFUSED, "no decoder for codec %s", avcodec_get_name(par->codec_id));
    goto out;
  }
  const request r = {idx, n, seek, fps, full_w, full_h, rx, ry, rw, rh, format, out};
  result = decode_loop(w, fc, result, &r, err, err_len);
out:
  avformat_close_input(&fc);
  return result;
}

/*
 * What the loader's ffprobe call reads (lib/data/ffmpeg.ts probeVideo), in process: out[0..7) = width,
 * height, frames, avg_frame_rate num/den, r_frame_rate num/den of the first video stream. frames is
 * the container's count, or when it has none (webm, mkv) the stream's packets counted by reading the
 * file without decoding, as ffprobe -count_packets does (up to the first read error, as ffprobe
 * stops there too). Returns VSD_OK, or VSD_ERROR with the reason in err.
 */
VSD_EXPORT int vsd_probe(const char* path, int64_t* out, char* err, int32_t err_len) {
  if (path == NULL || out == NULL) {
    return fail(err, err_len, VSD_ERROR, "bad arguments to vsd_probe");
  }
  AVFormatContext* fc = NULL;
  const int si = open_video(path, &fc, err, err_len);
  if (si < 0) {
    avformat_close_input(&fc);
    return si;
  }
  const AVStream* st = fc->streams[si];
  int64_t frames = st->nb_frames;
  if (!(frames > 0)) {
    AVPacket* pkt = av_packet_alloc();
    if (pkt == NULL) {
      avformat_close_input(&fc);
      return fail(err, err_len, VSD_ERROR, "out of memory for a packet");
    }
    frames = 0;
    while (av_read_frame(fc, pkt) >= 0) {
      frames += pkt->stream_index == si;
      av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
  }
  out[0] = st->codecpar->width;
  out[1] = st->codecpar->height;
  out[2] = frames;
  out[3] = st->avg_frame_rate.num;
  out[4] = st->avg_frame_rate.den;
  out[5] = st->r_frame_rate.num;
  out[6] = st->r_frame_rate.den;
  avformat_close_input(&fc);
  return VSD_OK;
}
