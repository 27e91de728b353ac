/*  pf_parse — strict parsing of command-line and config values. */
#ifndef PF_PARSE_H_INCLUDED
#define PF_PARSE_H_INCLUDED

//  Parses a whole decimal integer in [min, max] into *value. Returns 0, or
//  -1 (and leaves *value alone) for empty text, trailing characters,
//  overflow or a number out of range.
int pf_parse_number (const char *text, long long min, long long max, long long *value);

#endif
