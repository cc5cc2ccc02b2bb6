/* Where `narrate submit` puts each image's outputs: the input tree mirrored
 * under the output folder. An image at a/b/001.jpg (relative to the folder
 * given) gets OUT/a/b/001.jpg.txt, .wav, .json, .xmp and (embedded alt
 * text) the copy OUT/a/b/001.jpg: the output names keep the image's whole
 * name, so b.jpg and b.png in one folder never meet, and 001.jpg in two
 * folders stay in two folders. Names are made safe (nr_output_safe_name);
 * only when that, or a case-insensitive file system, would make two names
 * one does the later one (in sorted order) get "-2", "-3" before its
 * extension ("a_b-2.jpg"). */
#ifndef NR_CLIENT_OUTTREE_H
#define NR_CLIENT_OUTTREE_H

#include <stddef.h>

/* The suffixes written beside an image's output name. */
#define NR_OUTTREE_SUFFIXES {".txt", ".wav", ".json", ".xmp"}

/* Plans the outputs of n images given by their paths relative to their
 * root ("a/b/001.jpg"; '/'-separated; "" and "." components are dropped,
 * and no component can become "..": see nr_output_safe_name). Fills
 * dirs[i] ("" or "a/b", the output folder relative to OUT) and names[i]
 * ("001.jpg"), malloc'd; every (dir, name) family is distinct from every
 * other and from every folder. Returns 0 or NR_ENOMEM (nothing to free). */
int nr_outtree_plan(const char *const *rels, size_t n, char **dirs, char **names);

/* Creates OUT/rel (rel as planned above) one folder at a time, refusing a
 * symbolic link or anything but a folder on the way, so outputs cannot be
 * led out of OUT. Returns 0 or NR_EIO / NR_ENOMEM with a message in err. */
int nr_outtree_mkdir(const char *out, const char *rel, char *err, size_t errlen);

#endif
