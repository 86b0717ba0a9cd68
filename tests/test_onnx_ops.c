/*
 * tests/test_onnx_ops.c - the operator table (extract/onnx_graph.h): every entry is complete
 * and consistent, and names are unique across the ops_*.c fragments.
 */
#include <string.h>

#include "extract/onnx_graph.h"
#include "tests/test.h"

TEST(onnx_op_table_entries_complete)
{
    int n = onnx_op_count();
    ASSERT_GT(n, 40);
    ASSERT(onnx_op_at(n) == NULL);
    ASSERT(onnx_op_at(-1) == NULL);
    for (int i = 0; i < n; i++) {
        const onnx_opdef *od = onnx_op_at(i);
        ASSERT(od != NULL && od->name != NULL && od->name[0]);
        ASSERT(onnx_op_find(od->name) == od); /* unique: the first entry of a name is this one */
        if (od->flags & ONNX_OPF_CONST)
            continue;
        if (!od->infer || od->min_in < 0 || od->min_in > od->max_in || od->max_out < 1 ||
            od->dt < ONNX_DTR_FLOAT || od->dt > ONNX_DTR_CAST)
            TEST_FAILF("entry %s: incomplete bounds or rules", od->name);
        /* a view shares its input's buffer and has no kernel; every other op that can see
         * float data has one; int64 outputs need a static evaluation */
        if (od->flags & ONNX_OPF_VIEW) {
            if (od->run)
                TEST_FAILF("view %s has a kernel", od->name);
        } else if (od->dt != ONNX_DTR_SHAPE && !od->run) {
            TEST_FAILF("entry %s has no kernel", od->name);
        }
        if ((od->dt == ONNX_DTR_SHAPE || od->dt == ONNX_DTR_CAST) && !od->eval)
            TEST_FAILF("entry %s makes int64 values without an evaluation", od->name);
        if (od->max_in < 32 && od->param_in >> od->max_in)
            TEST_FAILF("entry %s marks a parameter input beyond max_in", od->name);
    }
    ASSERT(onnx_op_find("NoSuchOp") == NULL);
    ASSERT(onnx_op_find("Conv") != NULL && onnx_op_find("Shape") != NULL);
}
