/**
 * Type-checks ../stormwall-overview.json against Grafana's published
 * dashboard schema (@grafana/schema, the classic "v1" dashboard model that
 * dashboard JSON files and file provisioning use).
 *
 * A JSON import is typed structurally with widened primitives: "timeseries"
 * is `string`, never the literal, and TypeScript has no way to import JSON
 * "as const". So the schema is widened the same way (`AsJson`): string
 * unions and string enums become `string`, numeric enums `number`, and
 * everything else is kept -- required fields, optional fields, numbers vs
 * strings vs booleans vs null, arrays vs objects, nesting. On top of that,
 * `NoUnknownKeys` rejects a misspelt or invented field at the levels where
 * the schema lists every field (dashboard, panel, row, gridPos, field
 * config, variable, target datasource).
 */
import type {
  Dashboard,
  DataSourceRef,
  FieldConfig,
  GridPos,
  Panel,
  RowPanel,
  ThresholdsConfig,
  VariableModel,
} from "@grafana/schema";

import dashboardJson from "../stormwall-overview.json";

/** The schema type as a JSON import can match it. */
type AsJson<T> = T extends string
  ? string
  : T extends number
    ? number
    : T extends boolean
      ? boolean
      : T extends null | undefined
        ? T
        : T extends ReadonlyArray<infer E>
          ? AsJson<E>[]
          : T extends object
            ? { [K in keyof T]: AsJson<T[K]> }
            : T;

/** Every key of every member of a union (keyof a union keeps only shared keys). */
type AllKeys<T> = T extends unknown ? keyof T : never;

/** `true` when J has no key outside S, else the offending key names. */
type NoUnknownKeys<J, S> = [Exclude<AllKeys<J>, AllKeys<S>>] extends [never]
  ? true
  : Exclude<AllKeys<J>, AllKeys<S>>;

type Json = typeof dashboardJson;
type JsonPanel = Json["panels"][number];
type JsonTarget = NonNullable<Extract<JsonPanel, { targets: unknown }>["targets"]>[number];
type JsonVariable = Json["templating"]["list"][number];

// Keys Grafana writes on export and import (not part of the stored model).
type ExportKeys = "__inputs" | "__requires";

// The whole dashboard, field by field, against the schema.
export const dashboard: AsJson<Dashboard> = dashboardJson;

// No field the schema does not know, at every level it fully describes.
export const knownDashboardKeys: NoUnknownKeys<Omit<Json, ExportKeys>, Dashboard> = true;
export const knownPanelKeys: NoUnknownKeys<JsonPanel, Panel | RowPanel> = true;
export const knownGridPosKeys: NoUnknownKeys<JsonPanel["gridPos"], GridPos> = true;
export const knownFieldConfigKeys: NoUnknownKeys<
  Extract<JsonPanel, { fieldConfig: unknown }>["fieldConfig"]["defaults"],
  FieldConfig
> = true;
export const knownThresholdKeys: NoUnknownKeys<
  Extract<JsonPanel, { fieldConfig: unknown }>["fieldConfig"]["defaults"]["thresholds"],
  ThresholdsConfig
> = true;
export const knownVariableKeys: NoUnknownKeys<
  JsonVariable,
  VariableModel | { definition: string }
> = true;
export const knownTargetDatasourceKeys: NoUnknownKeys<
  JsonTarget["datasource"],
  DataSourceRef
> = true;
