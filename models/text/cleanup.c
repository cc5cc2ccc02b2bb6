/* Text clean-up shared by the tokenizers' decoders (see cleanup.h). */
#include "models/text/cleanup.h"

#include <string.h>

size_t nr_text_replace_all(char *s, size_t n, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to), o = 0;
    for (size_t i = 0; i < n;) {
        if (i + fl <= n && memcmp(s + i, from, fl) == 0) {
            memmove(s + o, to, tl);
            o += tl;
            i += fl;
        } else {
            s[o++] = s[i++];
        }
    }
    s[o] = '\0';
    return o;
}

size_t nr_text_clean_up_tokenization(char *s, size_t n) {
    static const char *const pairs[][2] = {{" .", "."},     {" ?", "?"},     {" !", "!"},   {" ,", ","},
                                           {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"},
                                           {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) n = nr_text_replace_all(s, n, pairs[p][0], pairs[p][1]);
    return n;
}
