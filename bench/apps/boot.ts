// Boot benchmark app: its first line marks "the app is running"; the second reports the
// guest's own boot milestones (ms since the first instruction, from the TSC).
import { bootTimes } from "torito";

console.log("torito: first line");
console.log(JSON.stringify(bootTimes()));
