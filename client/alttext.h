/* Alt text in XMP: reading and writing the IPTC accessibility property
 * Iptc4xmpCore:AltTextAccessibility (a lang-alt; we use x-default) through
 * exempi, in an image's embedded XMP or in an XMP sidecar file, and cutting
 * a caption to the IPTC guidance of 250 characters. exempi is initialised
 * once, on first use. Every function returns 0 or a negative NR_E* code
 * with a message in err. */
#ifndef NR_CLIENT_ALTTEXT_H
#define NR_CLIENT_ALTTEXT_H

#include <stddef.h>

#define NR_ALTTEXT_NS "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/"
#define NR_ALTTEXT_PROP "AltTextAccessibility"
#define NR_ALTTEXT_CHARS_MAX 250             /* IPTC: alt text should not be longer */
#define NR_ALTTEXT_SIDECAR_MAX ((size_t)1 << 20) /* bytes read from a sidecar */
#define NR_ALTTEXT_TEXT_MAX 65536            /* bytes kept of an existing alt text */

/* Makes the alt text for `caption`: surrounding white space trimmed; when
 * longer than max_chars code points it is cut at the last white space
 * that leaves at most max_chars (or, for one long word, before the
 * character that would exceed it, never between a character and the
 * combining marks, joiners or variation selectors that follow it), and
 * trailing spaces and ",;:" dropped. *out is malloc'd (caller frees), *cut
 * says whether anything was cut. Invalid UTF-8 in caption: NR_ETEXT. */
int nr_alttext_cut(const char *caption, size_t max_chars, char **out, int *cut, char *err,
                   size_t errlen);

/* Reads the x-default alt text from the XMP embedded in the image at path.
 * *text is NULL when the image has no XMP or no alt text, else malloc'd
 * (a format exempi has no handler for, such as HEIC, AVIF or BMP, is
 * scanned for an XMP packet; at most
 * NR_ALTTEXT_TEXT_MAX bytes). XMP that exempi finds but cannot parse:
 * NR_EIMAGE ("malformed XMP"); an unreadable file: NR_EIO. */
int nr_alttext_read_image(const char *path, char **text, char *err, size_t errlen);

/* Same for an XMP sidecar file (a bare x:xmpmeta or rdf:RDF document). A
 * missing file gives 0 with *text NULL; anything but a regular file (a
 * link is followed for reading), or one over NR_ALTTEXT_SIDECAR_MAX: NR_EIO;
 * unparsable XMP: NR_EIMAGE. */
int nr_alttext_read_sidecar(const char *path, char **text, char *err, size_t errlen);

/* Writes the sidecar dir/name (nr_output_write: atomic, stays in dir)
 * holding `text` as the alt text. When dir/name already holds parsable
 * XMP, every other property in it is kept. */
int nr_alttext_write_sidecar(const char *dir, const char *name, const char *text, char *err,
                             size_t errlen);

/* Writes dir/name: a copy of the image `src` with `text` embedded as its
 * alt text (the rest of its XMP kept), made as a temporary file in dir and
 * renamed into place. NR_EUNSUPPORTED when exempi cannot write XMP into
 * this format (the caller falls back to a sidecar); nothing is left
 * behind then. */
int nr_alttext_embed_copy(const char *src, const char *dir, const char *name, const char *text,
                          char *err, size_t errlen);

/* Embeds `text` into the image at path itself (exempi's safe update: a
 * temporary file renamed over it). Refuses a link or anything but a
 * regular file (NR_EIO); NR_EUNSUPPORTED as above. */
int nr_alttext_embed_in_place(const char *path, const char *text, char *err, size_t errlen);

#endif
