/*
 * usersedit.h - the users file editor of ringsocksctl, as pure functions over
 * the file's bytes: add a line, change a line's hash or attributes, delete a
 * line, and leave every other byte as it was (comments, blank lines, order,
 * other users' lines, CRLF endings, a missing last newline).
 *
 * Lines are read as the server reads them (users.c): blanks before the name
 * are skipped, '#' starts a comment, then "name:hash", then attributes
 * separated by blanks. No file, no allocation but the output buffer; any
 * thread.
 */
#ifndef RINGSOCKS_USERSEDIT_H
#define RINGSOCKS_USERSEDIT_H

#include <stddef.h>

#define USERSEDIT_NAME_MAX 255

enum usersedit_op {
    USERSEDIT_ADD,    /* a new line "name:hash[ attrs]"; -EEXIST when name has one */
    USERSEDIT_PASSWD, /* the line's hash replaced, its attributes kept; -ENOENT when none */
    USERSEDIT_DEL,    /* the line removed with its line end; -ENOENT when none */
    USERSEDIT_SET,    /* each attrs word replaces the line's word of that key, or is added */
};

/*
 * Why name cannot be a user name (the server's rule: 1..255 bytes, no ':',
 * no blank, no control character, no leading '#'), or NULL when it can.
 */
const char *usersedit_name_problem(const char *name);
/* Why attr is not one "key=value" attribute word (key [a-z0-9_], value non-empty, no blank or
 * control character), or NULL. The server checks the meaning on reload. */
const char *usersedit_attr_problem(const char *attr);

/*
 * Apply op for name to the file text in[0..len): the new text into *out
 * (malloc'ed, the caller frees it) and *outlen. hash: ADD and PASSWD;
 * attrs: "" or blank-separated words, ADD and SET. 0, -EINVAL (bad name or
 * attribute), -EEXIST, -ENOENT or -ENOMEM. *line: the 1-based line the
 * change is at (or the existing line for -EEXIST), 0 when none.
 */
int usersedit_apply(const char *in, size_t len, enum usersedit_op op, const char *name,
                    const char *hash, const char *attrs, char **out, size_t *outlen,
                    unsigned *line);

#endif
