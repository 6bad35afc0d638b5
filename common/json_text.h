/* json_text.h — checks on raw JSON text before it is parsed.
 *
 * cJSON decodes "\u0000" into a C string, where it ends the string, and
 * skips a raw NUL between tokens as if it were white space: "a\u0000b" would
 * silently become "a", an argv element would lose its tail.  Request bodies
 * and wire frames are refused instead. */
#ifndef AURORA_JSON_TEXT_H
#define AURORA_JSON_TEXT_H

#include <stddef.h>

/* 1 if text holds a raw NUL byte anywhere, or a \u0000 escape inside a
 * string (keys included; an escaped backslash before "u0000" is text). */
int json_text_has_nul(const char *text, size_t len);

/* Rewrites in place each \u0000 escape inside a string (keys included) as
 * \ufffd, the same length: for text whose NULs stand for bytes no C string
 * holds (command output), read as U+FFFD.  The number rewritten, or -1
 * (text unchanged) if it holds a raw NUL byte. */
int json_text_nul_to_replacement(char *text, size_t len);

/* An upper bound on the values (objects, arrays, strings, numbers,
 * literals) a parser builds from text: one, plus one per ',', '[' and '{'
 * outside strings.  A parser spends a node on each (cJSON: 64 bytes), many
 * times the text of "0,": a frame's size alone does not bound its tree. */
size_t json_text_values(const char *text, size_t len);

#endif
