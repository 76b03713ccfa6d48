/* loader.h: needle's DataLoader over an ndl_dataset, with rank sharding (SPEC §3): every rank walks
 * the same global batches (same shuffle, same augmentation draws from the one shared RNG stream) and
 * keeps its contiguous slice. Optional background prefetch (double buffering) of the next slice; the
 * results are identical with and without it. A cursor saves/restores the position for checkpoints. */
#ifndef NDL_DATA_LOADER_H
#define NDL_DATA_LOADER_H

#include <stdint.h>

#include "core/rng.h"
#include "core/status.h"
#include "data/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NDL_LOADER_CROP_PAD 4  /* augment: RandomCrop(4) ... */
#define NDL_LOADER_FLIP_P 0.5  /* ... then RandomFlipHorizontal(0.5), per sample */

typedef struct ndl_loader_config {
  int64_t batch_size; /* global batch size B >= 1 */
  int shuffle;        /* draw permutation(n) at each ndl_loader_epoch_begin */
  int augment;        /* RandomCrop(4) then RandomFlipHorizontal(0.5) per sample, in sample order */
  int prefetch;       /* assemble the next slice on a background thread */
} ndl_loader_config;

/* One rank's slice of one global batch. Pointers are borrowed from the loader and stay valid until
 * the next ndl_loader_next / ndl_loader_cursor_set / ndl_loader_free. */
typedef struct ndl_batch {
  int64_t epoch;         /* 0-based epoch index */
  int64_t index;         /* global batch index within the epoch */
  int64_t global_offset; /* epoch position of the global batch's first sample (index * B) */
  int64_t global_count;  /* samples in the global batch (B, or fewer for the last one) */
  int64_t local_offset;  /* this rank's first sample within the global batch */
  int64_t local_count;   /* this rank's samples (may be 0 when global_count < world) */
  int32_t rows, cols, channels;
  const float *images;    /* local_count x (rows*cols*channels), augmented if configured */
  const int32_t *labels;  /* local_count */
  const int64_t *indices; /* local_count dataset indices of the samples */
} ndl_batch;

/* Position for checkpoints. The loader keeps the state of the shared RNG as it was just before this
 * epoch's permutation draw (epoch_rng) and RE-DERIVES the permutation from it on restore; the
 * permutation itself is not stored. The shared RNG's current state is the caller's to save/restore. */
typedef struct ndl_loader_cursor {
  int64_t epochs_begun; /* ndl_loader_epoch_begin calls so far */
  int64_t next_batch;   /* next global batch index in the current epoch */
  int64_t n, batch_size;
  int32_t shuffle;
  int32_t in_epoch;  /* 1 while an epoch is being iterated */
  ndl_rng epoch_rng; /* shared RNG state at the current epoch's start */
} ndl_loader_cursor;

typedef struct ndl_loader ndl_loader;

/* Create a loader over ds (borrowed, must outlive it) drawing from rng (borrowed, the shared stream;
 * used only by the calling thread). NDL_ERR_ARG on a bad config, NDL_ERR_NOMEM when out of memory. */
ndl_status ndl_loader_new(const ndl_dataset *ds, const ndl_loader_config *cfg, ndl_rng *rng, ndl_loader **out);
/* Stop the prefetch thread and free everything; NULL is a no-op. */
void ndl_loader_free(ndl_loader *l);
/* Global batches per epoch: ceil(n / B). */
int64_t ndl_loader_num_batches(const ndl_loader *l);
/* Start an epoch (needle's __iter__): with shuffle, draws permutation(n) from the shared RNG. */
void ndl_loader_epoch_begin(ndl_loader *l);
/* Next global batch, rank's slice (0 <= rank < world): the first B%world ranks get one sample more.
 * Returns 1 with *out filled, 0 at the end of the epoch, NDL_ERR_ARG on a bad rank/world.
 * With augment, draws 2 randint + 1 rand per sample of the whole global batch. */
int ndl_loader_next(ndl_loader *l, int rank, int world, ndl_batch *out);
/* Save / restore the position; restore validates every field and changes nothing on failure:
 * NDL_ERR_MISMATCH when n, B or shuffle differ, NDL_ERR_FORMAT for an impossible position or RNG state. */
void ndl_loader_cursor_get(const ndl_loader *l, ndl_loader_cursor *c);
ndl_status ndl_loader_cursor_set(ndl_loader *l, const ndl_loader_cursor *c);

/* Rank r of world's slice of a global batch of g samples. */
void ndl_loader_slice(int64_t g, int rank, int world, int64_t *offset, int64_t *count);

#ifdef __cplusplus
}
#endif
#endif
