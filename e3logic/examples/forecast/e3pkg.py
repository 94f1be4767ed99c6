"""Monthly sales forecast: CSV sales -> clean -> features -> fit a trend -> forecast -> report.

Build it with `e3 build examples/forecast`; see docs/packages.md.
"""
from e3logic import sdk

package = sdk.package("forecast", "0.1.0")
package.module("steps.py")

# python tasks get their inputs decoded, in order, and return a JSON-able value
package.task("clean", "steps:clean", runtime="python")
package.task("features", "steps:features", runtime="python")
package.task("fit", "steps:fit", runtime="python")
package.task("forecast", "steps:forecast", runtime="python")
# an inline task runs inside the engine's own process (tiny pure steps)
package.task("summary", "steps:summary", runtime="inline")
# a shell task: POSIX tools turn the forecast JSON into a markdown table. $1 = {input0},
# $2 = {output}. (No braces in the script: only the {placeholders} are templated.)
REPORT = r"""set -e
exec > "$2"
echo "# Sales forecast"
echo
echo "Next $(sed -n 's/.*"horizon":\([0-9]*\).*/\1/p' "$1") months, from a linear trend per region."
echo
echo "| region | month | sales |"
echo "|---|---|---|"
tr '[' '\n' < "$1" | grep '^"' | tr -d '"]\175' | sed 's/^\([^,]*\),\([^,]*\),\([^,]*\).*$/| \1 | \2 | \3 |/'
"""
package.task("report", ["sh", "-c", REPORT, "report", "{input0}", "{output}"], runtime="shell")

package.dataset("inputs/sales", file="data/sales.csv")   # raw bytes
package.dataset("inputs/horizon", value=6)               # a JSON value: months to forecast

package.dataflow("clean", task="clean", inputs=["inputs/sales"], output="rows",
                 leases=[("inputs/sales", "read")])
package.dataflow("features", task="features", inputs=["outputs/clean/rows"], output="table")
package.dataflow("fit", task="fit", inputs=["outputs/features/table"], output="model",
                 resources={"cpu": 1},
                 budget={"wall_s": 60, "cpu_s": 30, "mem_mb": 512})
package.dataflow("forecast", task="forecast",
                 inputs=["outputs/fit/model", "outputs/features/table", "inputs/horizon"],
                 output="values")
package.dataflow("summary", task="summary", inputs=["outputs/forecast/values"], output="totals")
package.dataflow("report", task="report", inputs=["outputs/forecast/values"], output="markdown",
                 budget={"wall_s": 30})
