/* The thumbnail tests' area-average reference (area_diff.h). */
#include "tests/area_diff.h"

double nr_test_area_diff(const nr_image_t *src, const nr_image_t *thumb) {
    double sum = 0;
    for (int ty = 0; ty < thumb->height; ty++) {
        int y0 = (int)((long long)ty * src->height / thumb->height);
        int y1 = (int)((long long)(ty + 1) * src->height / thumb->height);
        for (int tx = 0; tx < thumb->width; tx++) {
            int x0 = (int)((long long)tx * src->width / thumb->width);
            int x1 = (int)((long long)(tx + 1) * src->width / thumb->width);
            for (int c = 0; c < 3; c++) {
                double acc = 0;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) acc += src->data[((size_t)y * src->width + x) * 3 + c];
                acc /= (double)(y1 - y0) * (x1 - x0);
                double t = thumb->data[((size_t)ty * thumb->width + tx) * 3 + c];
                sum += acc > t ? acc - t : t - acc;
            }
        }
    }
    return sum / ((double)thumb->width * thumb->height * 3);
}

