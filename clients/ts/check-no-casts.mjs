// The client program must compile against the generated types as they are: no type assertion
// (`x as T`, `<T>x`), no non-null assertion (`x!`), no `any`, no `@ts-ignore` / `@ts-expect-error`.
// Usage: node check-no-casts.mjs <dir> — checks every .ts file under it except generated/.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";

const root = process.argv[2] ?? "src";
const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== "generated") walk(path);
    else if (entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) files.push(path);
  }
};
walk(root);

const problems = [];
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const report = (node, what) => {
    const { line, character } = source.getLineAndCharacterOfPosition(node.getStart(source));
    problems.push(`${file}:${line + 1}:${character + 1}: ${what}: ${node.getText(source).slice(0, 60)}`);
  };
  const visit = (node) => {
    if (ts.isAsExpression(node)) report(node, "type assertion (as)");
    else if (ts.isTypeAssertionExpression(node)) report(node, "type assertion (<T>)");
    else if (ts.isNonNullExpression(node)) report(node, "non-null assertion (!)");
    else if (node.kind === ts.SyntaxKind.AnyKeyword) report(node, "any");
    ts.forEachChild(node, visit);
  };
  visit(source);
  text.split("\n").forEach((line, i) => {
    if (/@ts-(ignore|expect-error|nocheck)/.test(line)) problems.push(`${file}:${i + 1}: a @ts- directive`);
  });
}
for (const p of problems) console.error(p);
if (files.length === 0) {
  console.error(`no .ts file under ${root}`);
  process.exit(1);
}
console.log(`${files.length} file(s), ${problems.length} cast(s)`);
process.exit(problems.length ? 1 : 0);
