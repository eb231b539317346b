import { Public } from '../auth/api-keys';
import { SkipThrottle } from '@nestjs/throttler';
import { Controller, Get, Header } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { ApiMetrics } from './api-metrics';

@Public()
@SkipThrottle()
@ApiTags('health')
@Controller()
export class MetricsController {
  constructor(private readonly metrics: ApiMetrics) {}

  @Get('metrics')
  @ApiOperation({ summary: 'Prometheus metrics of this API process (open, never rate limited)' })
  @ApiProduces('text/plain')
  @ApiOkResponse({ description: 'Prometheus text exposition format 0.0.4', schema: { type: 'string' } })
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
